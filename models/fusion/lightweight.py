"""Lightweight cross-attention fusion (--fusion lightweight, 4 heads by default): one attention pass
(the semantic branch queries the syntactic one) and a linear fusion of the concatenation."""
from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttention, OutputBlock, attention_mask


class LightweightCrossAttentionFusion(nn.Module):
    def __init__(self, dim: int, heads: int, window: int = 0, dropout: float = 0.1, output_block: bool = False,
                 **unused_options):
        super().__init__()
        self.window = window
        self.norm_sem, self.norm_syn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.sem_to_syn = CrossAttention(dim, heads, dropout)
        self.fuse = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.output_block = OutputBlock(dim, dropout) if output_block else nn.Identity()

    def forward(self, x, h_syn, h_sem, word_mask):
        sem = self.norm_sem(x + h_sem)
        syn = self.norm_syn(x + h_syn)
        sem_att = sem + self.sem_to_syn(sem, syn, attention_mask(word_mask, self.window))
        fused = self.dropout(self.fuse(torch.cat([sem_att, syn], dim=-1)))
        return self.output_block(fused) * word_mask.unsqueeze(-1).to(x.dtype)
