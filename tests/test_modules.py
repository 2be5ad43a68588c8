"""Shapes, padding invariance, gradients and numerical health of every module."""
import pytest
import torch

from conftest import toy_sentences
from helpers import batch_of, tiny_model
from models.fusion import FUSIONS, build_fusion
from models.gcn import EnhancedSemanticGCN, SemanticGCN, SyntacticGCN

FUSION_VARIANTS = [
    ("tin", {}), ("cross_attention", {"heads": 8}), ("cross_attention", {"heads": 4}), ("lightweight", {}),
    ("cross_attention", {"heads": 4, "share_weights": True}), ("cross_attention", {"heads": 4, "window": 2}),
    ("lightweight", {"window": 3}),
]


def padded_pair(B, W, D, pad, seed=0):
    """Inputs of B sentences of lengths 1..W, and the same inputs with `pad` extra padding positions
    holding garbage."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, W + 1, (B,), generator=g)
    lengths[0] = W
    mask = torch.arange(W)[None] < lengths[:, None]
    xs = [torch.randn(B, W, D, generator=g) for _ in range(3)]
    adj = (torch.rand(B, W, W, generator=g) > 0.7).float()
    adj = ((adj + adj.transpose(1, 2) + torch.eye(W)) > 0).float() * (mask[:, :, None] & mask[:, None, :])

    def pad_t(t, value):
        shape = list(t.shape)
        shape[1] = pad
        return torch.cat([t, torch.full(shape, value, dtype=t.dtype)], 1)

    mask_p = pad_t(mask, False)
    xs_p = [pad_t(x, 7.0) for x in xs]
    adj_p = torch.zeros(B, W + pad, W + pad)
    adj_p[:, :W, :W] = adj
    return (xs, adj, mask), (xs_p, adj_p, mask_p)


@pytest.mark.parametrize("name,kw", FUSION_VARIANTS)
def test_fusion_shapes_padding_and_gradients(name, kw):
    torch.manual_seed(0)
    D = 32
    module = build_fusion(name, D, heads=kw.get("heads"), share_weights=kw.get("share_weights", False),
                          window=kw.get("window", 0)).eval()
    (xs, _, mask), (xs_p, _, mask_p) = padded_pair(5, 9, D, pad=6)
    out = module(*xs, mask)
    out_p = module(*xs_p, mask_p)
    assert out.shape == (5, 9, D) and out_p.shape == (5, 15, D)
    assert torch.allclose(out * mask[..., None], out_p[:, :9] * mask[..., None], atol=1e-5)
    assert torch.all(out_p[:, 9:] == 0) and torch.all(out[~mask] == 0)
    module.train()
    module(*[x.requires_grad_() for x in xs], mask).pow(2).sum().backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_shared_weights_halve_attention_parameters():
    full = build_fusion("cross_attention", 64, heads=4)
    shared = build_fusion("cross_attention", 64, heads=4, share_weights=True)
    attn = sum(p.numel() for p in full.sem_to_syn.parameters())
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in shared.parameters()) == attn


def test_window_restricts_attention():
    """With window 1, the output at word 0 must not depend on word 5."""
    torch.manual_seed(0)
    module = build_fusion("lightweight", 16, heads=2, window=1).eval()
    x, syn, sem = (torch.randn(1, 8, 16) for _ in range(3))
    mask = torch.ones(1, 8, dtype=torch.bool)
    base = module(x, syn, sem, mask)
    syn2 = syn.clone()
    syn2[0, 5] += torch.randn(16) * 3  # (a constant shift would vanish in the LayerNorm)
    changed = module(x, syn2, sem, mask)
    assert torch.allclose(base[0, 0], changed[0, 0]) and not torch.allclose(base[0, 4], changed[0, 4])


@pytest.mark.parametrize("name,kw", FUSION_VARIANTS[:4])
@pytest.mark.parametrize("B,W", [(1, 1), (1, 128), (32, 7), (32, 128), (3, 2)])
def test_fusion_finite_fp32_and_bf16_autocast(name, kw, B, W):
    torch.manual_seed(0)
    module = build_fusion(name, 32, heads=kw.get("heads")).eval()
    (xs, _, mask), _ = padded_pair(B, W, 32, pad=1)
    assert torch.isfinite(module(*xs, mask)).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(*xs, mask)
    assert out.shape == (B, W, 32) and torch.isfinite(out.float()).all()


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
    assert torch.allclose(gcn(xs[0], adj, mask)[mask], gcn(xs_p[0], adj_p, mask_p)[:, :10][mask], atol=1e-6)


def test_registry_covers_every_flag_value():
    assert set(FUSIONS) == {"tin", "cross_attention", "lightweight"}
    with pytest.raises(ValueError, match="must divide"):
        build_fusion("cross_attention", 30, heads=8)


@pytest.mark.parametrize("fusion", ["tin", "cross_attention", "lightweight"])
@pytest.mark.parametrize("enhanced", [False, True])
def test_full_model_padding_invariance(tiny_bert_dir, fusion, enhanced):
    """A sentence scores the same alone and batched with a longer one (eval mode)."""
    model, tok = tiny_model(tiny_bert_dir, fusion=fusion, enhanced_semgcn=enhanced, cross_attention_heads=4)
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
    model, tok = tiny_model(tiny_bert_dir, fusion=fusion, enhanced_semgcn=True, cross_attention_heads=4,
                            loss_weighting="uncertainty")
    model.train()
    batch, _ = batch_of(toy_sentences(), tok, train=True)
    span_logits, pair_logits = model(batch)
    assert span_logits.shape == (batch["spans"].shape[0], 3) and pair_logits.shape == (batch["pairs"].shape[0], 3)
    loss, _, _ = model.loss(batch, span_logits, pair_logits)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
