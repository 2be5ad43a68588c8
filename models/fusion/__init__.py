"""Fusion of the syntactic and semantic GCN branches: one interface, a registry keyed by --fusion.

Every fusion module is built as ``Fusion(dim, heads=..., share_weights=..., window=..., dropout=...,
output_block=...)`` (each takes the options it uses and ignores the others, which Parameter.py
refuses for fusions that do not use them) and called as
``fusion(x, h_syn, h_sem, word_mask) -> (B, W, dim)``: x is the residual stream (the encoder's word
features), h_syn / h_sem the two GCN outputs, word_mask (B, W) True on real words. Outputs at
padding are zero, and real positions never depend on padding.

To add a fusion: write a module in this folder with that constructor and call, and add it to
FUSIONS (and, if it has attention heads, to DEFAULT_HEADS); `--fusion NAME` then selects it.
"""
from __future__ import annotations

from torch import nn

from .cross_attention import CrossAttentionFusion
from .lightweight import LightweightCrossAttentionFusion
from .tin import TINFusion, TINWithoutLSTMFusion

FUSIONS = {
    "tin": TINFusion,
    "tin_no_lstm": TINWithoutLSTMFusion,
    "cross_attention": CrossAttentionFusion,
    "lightweight": LightweightCrossAttentionFusion,
}
DEFAULT_HEADS = {"cross_attention": 8, "lightweight": 4}  # the one place that sets them


def fusion_heads(name: str, heads: int | None) -> int | None:
    """Attention heads a fusion runs with: the given count, its default, or None (no attention)."""
    return (heads or DEFAULT_HEADS[name]) if name in DEFAULT_HEADS else None


def default_output_block(name: str) -> bool:
    """Whether a fusion ends in the LayerNorm + feed-forward block when --fusion_output_block is not given:
    only cross-attention, where it raised dev F1 (Results/accuracy.md); lightweight stays a single pass."""
    return name == "cross_attention"


def build_fusion(name: str, dim: int, heads: int | None = None, share_weights: bool = False,
                 window: int = 0, dropout: float = 0.1, output_block: bool = False) -> nn.Module:
    if name not in FUSIONS:
        raise ValueError(f"--fusion {name!r}: choose from {sorted(FUSIONS)}")
    return FUSIONS[name](dim, heads=fusion_heads(name, heads), share_weights=share_weights, window=window,
                         dropout=dropout, output_block=output_block)
