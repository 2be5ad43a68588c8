"""Lightweight cross-attention fusion (--fusion lightweight, 4 heads by default): the bidirectional
fusion with one attention pass only (the semantic branch queries the syntactic one)."""
from __future__ import annotations

from . import register_fusion
from .cross_attention import HEADS, OUTPUT_BLOCK, WINDOW, CrossAttentionFusion


@register_fusion("lightweight")
class LightweightCrossAttentionFusion(CrossAttentionFusion):
    defaults = {HEADS: 4, WINDOW: 0, OUTPUT_BLOCK: False}

    def __init__(self, dim: int, dropout: float = 0.1, cross_attention_heads: int = 4, cross_attention_window: int = 0,
                 fusion_output_block: bool = False):
        super().__init__(dim, dropout, cross_attention_heads, cross_attention_window=cross_attention_window,
                         fusion_output_block=fusion_output_block, bidirectional=False)
