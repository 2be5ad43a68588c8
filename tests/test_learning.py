"""End-to-end learning checks with tiny encoders: a model that fits 8 sentences to triplet F1 = 1.0,
and a full DeBERTa-v3-architecture training step."""
import pytest
import torch

from aste.evaluator import Evaluator
from conftest import toy_sentences
from helpers import batch_of, tiny_model


def fit(model, tok, sentences, steps, lr=3e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        model.train()
        batch, _ = batch_of(sentences, tok, train=True, neg=-1, epoch=step)
        loss, _, _ = model.loss(batch, *model(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            m = evaluate(model, tok, sentences)
            if m["triplet"]["f1"] == 100.0:
                return m, step
    return evaluate(model, tok, sentences), steps


def evaluate(model, tok, sentences):
    model.eval()
    batch, ds = batch_of(sentences, tok, train=False)
    ev = Evaluator(ds)
    ev.add(batch["index"], model.predict(batch, 0.4, 1000))
    return ev.metrics()


@pytest.mark.parametrize("fusion", ["tin", "cross_attention"])
def test_tiny_model_fits_eight_sentences(tiny_bert_dir, fusion):
    model, tok = tiny_model(tiny_bert_dir, fusion=fusion, cross_attention_heads=4, lstm_dropout=0.0)
    sents = toy_sentences()
    m, step = fit(model, tok, sents, steps=400)
    assert m["triplet"]["f1"] == 100.0, (step, m["triplet"], m["entity"])
    assert m["entity"]["f1"] == 100.0 and m["pair"]["f1"] == 100.0


def test_deberta_v3_architecture_full_train_step(tiny_deberta_dir):
    """Random tiny DebertaV2Config model + a SentencePiece tokenizer trained in the test: the classes
    that load microsoft/deberta-v3-base. One optimizer step changes the encoder and lowers nothing to NaN."""
    from transformers import DebertaV2Model, DebertaV2Tokenizer

    model, tok = tiny_model(tiny_deberta_dir, fusion="cross_attention", cross_attention_heads=4)
    assert isinstance(model.encoder, DebertaV2Model) and isinstance(tok, DebertaV2Tokenizer)
    batch, _ = batch_of(toy_sentences(), tok, train=True)
    assert (batch["subword_word"] >= 0).sum() >= sum(len(s.tokens) for s in toy_sentences())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    loss, _, _ = model.loss(batch, *model(batch))
    loss.backward()
    assert torch.isfinite(loss)
    enc_grads = [p.grad for n, p in model.encoder.named_parameters() if p.grad is not None]
    assert enc_grads and all(torch.isfinite(g).all() for g in enc_grads)
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("encoder.") for n in changed) and any(n.startswith("fusion.") for n in changed)
    m = evaluate(model, tok, toy_sentences())
    assert 0.0 <= m["triplet"]["f1"] <= 100.0
