"""GCNs and the full model: padding invariance, gradients, shapes."""
import pytest
import torch

from conftest import toy_sentences
from helpers import batch_of, padded_pair, tiny_model
from models.gcn import EnhancedSemanticGCN, SemanticGCN, SyntacticGCN



@pytest.mark.parametrize("gcn_cls", [SemanticGCN, EnhancedSemanticGCN])
def test_semantic_gcn_padding_and_gradients(gcn_cls):
    torch.manual_seed(0)
    gcn = gcn_cls(32, heads=4, layers=2).eval()
    (xs, _, mask), (xs_p, _, mask_p) = padded_pair(4, 10, 32, pad=5)
    out, out_p = gcn(xs[0], mask), gcn(xs_p[0], mask_p)
    assert torch.allclose(out[mask], out_p[:, :10][mask], atol=1e-5)
    adj = gcn.adjacency(xs[0], mask)
    assert torch.all(adj[~mask] == 0) and torch.all(adj.transpose(1, 2)[~mask] == 0)  # padding rows/columns
    diag = torch.diagonal(adj, dim1=1, dim2=2)
    assert torch.all(diag[mask] == 1) and torch.all(diag[~mask] == 0)  # self loops on real words only
    gcn.train()
    gcn(xs[0], mask).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gcn.parameters())


def test_syntactic_gcn_padding():
    torch.manual_seed(0)
    gcn = SyntacticGCN(32).eval()
    (xs, adj, mask), (xs_p, adj_p, mask_p) = padded_pair(4, 10, 32, pad=5)
    assert torch.allclose(gcn(xs[0], adj)[mask], gcn(xs_p[0], adj_p)[:, :10][mask], atol=1e-6)


@pytest.mark.parametrize("fusion", ["tin", "cross_attention", "lightweight"])
@pytest.mark.parametrize("enhanced", [False, True])
def test_full_model_padding_invariance(tiny_bert_dir, fusion, enhanced):
    """A sentence scores the same alone and batched with a longer one (eval mode)."""
    model, tok = tiny_model(tiny_bert_dir, fusion=fusion, use_enhanced_semgcn=enhanced, cross_attention_heads=4)
    model.eval()
    sents = toy_sentences()
    short, long_ = sents[2], sents[6]
    alone, _ = batch_of([short], tok, train=False)
    both, _ = batch_of([short, long_], tok, train=False)
    h1 = model.features(alone)[0]
    h2 = model.features(both)[0, : h1.shape[0]]
    assert torch.allclose(h1, h2, atol=1e-5)
    p1 = model.predict(alone, 0.0, 1000)
    p2 = model.predict(both, 0.0, 1000)
    first = p2["spans"][:, 0] == 0
    assert torch.equal(p1["spans"], p2["spans"][first])
    assert torch.allclose(p1["span_scores"], p2["span_scores"][first], atol=1e-5)
    t_first = p2["triplets"][:, 0] == 0
    assert torch.equal(p1["triplets"], p2["triplets"][t_first])


@pytest.mark.parametrize("fusion", ["tin", "cross_attention", "lightweight"])
def test_every_parameter_gets_a_gradient(tiny_bert_dir, fusion):
    model, tok = tiny_model(tiny_bert_dir, fusion=fusion, use_enhanced_semgcn=True, cross_attention_heads=4,
                            loss_weighting="uncertainty")
    model.train()
    batch, _ = batch_of(toy_sentences(), tok, train=True)
    span_logits, pair_logits = model(batch)
    assert span_logits.shape == (batch["spans"].shape[0], 3) and pair_logits.shape == (batch["pairs"].shape[0], 3)
    loss, _, _ = model.loss(batch, span_logits, pair_logits)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_masked_bilstm_equals_packed_lstm():
    """MaskedBiLSTM (dense kernels, per-sentence reversal) computes what a packed bidirectional
    nn.LSTM computes, outputs and gradients, and is zero at padding."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from models.lstm import MaskedBiLSTM

    def packed_run(lstm, x, lengths):
        out, _ = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]

    torch.manual_seed(0)
    ours = MaskedBiLSTM(6, 5, num_layers=2).eval()
    ref = torch.nn.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True).eval()
    with torch.no_grad():  # copy our per-direction weights into the reference's layout
        for layer in range(2):
            for direction, lstms in (("", ours.forward_layers), ("_reverse", ours.backward_layers)):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(ref, f"{name}_l{layer}{direction}").copy_(getattr(lstms[layer], f"{name}_l0"))
    lengths = torch.tensor([7, 3, 5, 1])
    mask = torch.arange(7)[None, :] < lengths[:, None]
    x = torch.randn(4, 7, 6).masked_fill(~mask[..., None], 3.0)  # junk at padding must not matter
    x_ref = x.clone().requires_grad_()
    x_ours = x.clone().requires_grad_()
    expected = packed_run(ref, x_ref, lengths)
    got = ours(x_ours, mask)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert got[~mask].abs().max() == 0
    g = torch.randn_like(got)
    (got * g).sum().backward()
    (expected * g).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-6, rtol=1e-5)


class NaiveRangeMax:
    """The per-range max written out (a loop over ranges: tests only), with RangeMax's interface."""

    def __init__(self, h):
        self.h = h

    def query(self, batch, start, end):
        return torch.stack([self.h[b, s:e].max(0).values for b, s, e in zip(batch.tolist(), start.tolist(), end.tolist())])


def test_model_gradients_with_fast_and_naive_span_pooling_agree(tiny_bert_dir, monkeypatch):
    """The whole model's loss and every parameter gradient, in float64 with dropout on: the argmax
    table's backward computes the same function as differentiating the naive max (only the
    summation order differs, which is what float64 makes invisible)."""
    import models.d2e2s
    model, tok = tiny_model(tiny_bert_dir, fusion="tin")
    model.double().train()
    batch, _ = batch_of(toy_sentences(), tok, train=True)

    def grads():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the same dropout masks in both passes
        loss, _, _ = model.loss(batch, *model(batch))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    fast_loss, fast = grads()
    monkeypatch.setattr(models.d2e2s, "RangeMax", NaiveRangeMax)
    naive_loss, naive = grads()
    assert torch.equal(fast_loss, naive_loss)
    assert fast.keys() == naive.keys()
    for name in fast:
        assert torch.allclose(fast[name], naive[name], rtol=1e-9, atol=1e-12), name


def test_overlap_filters_in_predict(tiny_bert_dir):
    """--overlap_filter: 'triplets' keeps a subset of the unfiltered triplets with no two sharing a span
    and overlapping in the other; 'spans' leaves no two overlapping spans of one type in a sentence."""
    model, tok = tiny_model(tiny_bert_dir)
    model.eval()
    with torch.no_grad():  # an untrained model: make every span an aspect or an opinion (many overlaps)
        model.span_head.classifier.bias.copy_(torch.tensor([-20.0, 0.0, 0.0]))
    batch, _ = batch_of(toy_sentences(), tok, train=False)
    out = {o: model.predict(batch, 0.0, 1000, o) for o in ("none", "spans", "triplets")}
    plain = {tuple(t) for t in out["none"]["triplets"].tolist()}
    kept = [tuple(t) for t in out["triplets"]["triplets"].tolist()]
    assert plain and set(kept) <= plain and len(kept) < len(plain)
    for i, a in enumerate(kept):
        for b in kept[i + 1:]:
            if a[0] != b[0]:
                continue
            same_aspect, same_opinion = a[1:3] == b[1:3], a[3:5] == b[3:5]
            overlap_op = a[3] < b[4] and b[3] < a[4]
            overlap_asp = a[1] < b[2] and b[1] < a[2]
            assert not (same_aspect and overlap_op) and not (same_opinion and overlap_asp), (a, b)
    spans = out["spans"]
    ents = list(zip(spans["spans"].tolist(), spans["span_types"].tolist()))
    for i, ((r, s, e), t) in enumerate(ents):
        for (r2, s2, e2), t2 in ents[i + 1:]:
            assert not (r == r2 and t == t2 and s < e2 and s2 < e), ((r, s, e), (r2, s2, e2))


def test_span_boundary_and_pair_distance_features(tiny_bert_dir):
    """--span_boundary and --pair_distance_embedding: the heads take the extra features, every
    parameter gets a finite gradient, and the distance buckets are as documented."""
    from models.heads import distance_bucket
    model, tok = tiny_model(tiny_bert_dir, span_boundary=True, pair_distance_embedding=8)
    model.train()
    batch, _ = batch_of(toy_sentences(), tok, train=True)
    span_logits, pair_logits = model(batch)
    assert pair_logits.shape == (batch["pairs"].shape[0], 3)
    loss, _, _ = model.loss(batch, span_logits, pair_logits)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    assert model.pair_head.distance.weight.grad.abs().sum() > 0
    aspect = torch.tensor([[5, 6], [5, 6], [5, 6], [5, 6], [40, 41]])
    opinion = torch.tensor([[6, 8], [9, 10], [3, 5], [0, 1], [0, 2]])
    # gaps 0, 3, 0 (opinion first), 4 (opinion first), 38 (opinion first, 32+)
    assert distance_bucket(aspect, opinion).tolist() == [0, 3, 9, 13, 17]


@pytest.mark.parametrize("fusion_lr", [None, 1e-3])
def test_fusion_lr_gives_the_fusion_module_its_own_rate(tiny_bert_dir, fusion_lr):
    from aste.trainer import build_optimizer
    from Parameter import parse_args
    model, _ = tiny_model(tiny_bert_dir, fusion="cross_attention", cross_attention_heads=2)
    argv = ["--lr", "1e-5", "--task_lr", "3e-4", "--epochs", "20"] + ([] if fusion_lr is None else
                                                                       ["--fusion_lr", str(fusion_lr)])
    optimizer, _ = build_optimizer(model, parse_args(argv), updates_per_epoch=10)
    lr_of = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        expected = 1e-5 if name.startswith("encoder.") else 3e-4
        if name.startswith("fusion.") and fusion_lr is not None:
            expected = fusion_lr
        assert lr_of[id(p)] == expected, name
    assert any(n.startswith("fusion.") for n, _ in model.named_parameters())
