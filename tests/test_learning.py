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
    model, tok = tiny_model(tiny_bert_dir, fusion=fusion, cross_attention_heads=4, drop_out_rate=0.0)
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


def toy_trainer(tiny_bert_dir, flags: list[str]):
    """A tiny model, a loader of the 8 toy sentences in 4 batches of 2, and a Trainer with `flags`; the
    model's loss is made non-finite on the calls listed in the returned `nan_calls`."""
    from functools import partial

    from torch.utils.data import DataLoader

    from aste.sampling import ASTEDataset, LengthBucketSampler, collate
    from aste.trainer import Trainer
    from Parameter import parse_args

    model, tok = tiny_model(tiny_bert_dir)
    ds = ASTEDataset(toy_sentences(), tok, max_span_size=4, train=True)
    ds.set_epoch(1)
    loader = DataLoader(ds, batch_sampler=LengthBucketSampler(ds.lengths(), 2, shuffle=True),
                        collate_fn=partial(collate, pad_id=ds.pad_id))
    assert len(loader) == 4
    args = parse_args(flags + ["--lr", "1e-3", "--lr_warmup", "0", "--epochs", "20"])
    trainer = Trainer(model, model, args, torch.device("cpu"), None,
                      updates_per_epoch=len(loader) // args.grad_accum_steps)
    real_loss, calls, nan_calls = model.loss, {"n": 0}, set()

    def flaky(*a, **k):
        calls["n"] += 1
        total, s, p = real_loss(*a, **k)
        return (total * float("nan") if calls["n"] in nan_calls else total), s, p

    model.loss = flaky
    return model, loader, trainer, nan_calls


def test_nonfinite_loss_is_skipped_counted_and_stops_the_run(tiny_bert_dir):
    from aste.trainer import NonFiniteLoss

    model, loader, trainer, nan_calls = toy_trainer(tiny_bert_dir, ["--max_bad_steps", "3"])
    nan_calls.add(2)
    stats = trainer.train_epoch(loader, 1)
    assert stats["skipped_steps"] == 1 and trainer.state.bad_steps_total == 1 and stats["loss"] == stats["loss"]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    nan_calls.update(range(5, 9))  # every call of epoch 2
    with pytest.raises(NonFiniteLoss, match="3 non-finite losses in a row"):
        trainer.train_epoch(loader, 2)


def test_nonfinite_loss_keeps_the_accumulation_windows_update(tiny_bert_dir):
    """With --grad_accum_steps 2, a non-finite loss at the end of a window used to throw away the window's
    good gradients and its update (and so shift the learning-rate schedule); now it only drops itself."""
    model, loader, trainer, nan_calls = toy_trainer(tiny_bert_dir, ["--grad_accum_steps", "2"])
    nan_calls.add(2)
    stats = trainer.train_epoch(loader, 1)
    assert stats["skipped_steps"] == 1
    assert trainer.scheduler.last_epoch == 2  # both windows made their update
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_oom_message_names_shape_and_remedies():
    from aste.trainer import OutOfMemory, out_of_memory_message

    batch = {"input_ids": torch.zeros(16, 87, dtype=torch.long), "spans": torch.zeros(1700, 3)}
    with pytest.raises(OutOfMemory) as err, out_of_memory_message(batch, "training"):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    msg = str(err.value)
    assert "16 sentences x 87 subwords" in msg and "--amp fp16" in msg and "--grad_checkpointing" in msg


@pytest.mark.parametrize("overlap", ["spans", "triplets"])
def test_evaluation_decoded_once_scores_every_threshold_as_if_decoded_at_it(tiny_bert_dir, overlap):
    """Training decodes once at the lowest of THRESHOLDS and the run's own threshold, then scores each
    (metrics.jsonl's "decodings"): every score and prediction record is the one a decode at that
    threshold gives, below the run's own threshold as above it."""
    from torch.utils.data import DataLoader
    from aste.sampling import collate
    from aste.trainer import evaluate as evaluate_split
    torch.manual_seed(0)
    model, tok = tiny_model(tiny_bert_dir, drop_out_rate=0.0)
    fit(model, tok, toy_sentences(), steps=60)
    with torch.no_grad():  # softer pair scores: some between the thresholds, not all near 0 or 1
        for p in model.pair_head.parameters():
            p.mul_(0.4)
    batch, ds = batch_of(toy_sentences(), tok, train=False)
    loader = DataLoader(ds, batch_size=3, collate_fn=lambda b: collate(b, pad_id=ds.pad_id))
    scores = model.predict(batch, 0.0, 1000, overlap)["triplet_scores"]
    assert ((scores > 0.4) & (scores <= 0.8)).any() and (scores > 0.8).any(), scores
    for own in (0.4, 0.8):
        ev = evaluate_split(model, loader, own, 1000, torch.device("cpu"), overlap=overlap)
        for t in (0.4, 0.6, 0.8, 0.95):
            direct = Evaluator(ds)
            direct.add(batch["index"], model.predict(batch, t, 1000, overlap))
            m = direct.metrics()
            assert ev.metrics_at(t) == {k: m[k] for k in ("pair", "triplet", "triplet_by_sentiment")}, (own, t)
            if t == own:
                assert ev.metrics() == m and ev.prediction_records() == direct.prediction_records()
