"""Bidirectional cross-attention fusion (--fusion cross_attention, 8 heads by default): the semantic
branch queries the syntactic one and vice versa, each with a residual; a linear layer fuses the
concatenation back to the model width."""
from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttention, OutputBlock, attention_mask


class CrossAttentionFusion(nn.Module):
    def __init__(self, dim: int, heads: int, share_weights: bool = False, window: int = 0, dropout: float = 0.1,
                 output_block: bool = False, **unused_options):
        super().__init__()
        self.window = window
        self.norm_sem, self.norm_syn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.sem_to_syn = CrossAttention(dim, heads, dropout)
        self.syn_to_sem = self.sem_to_syn if share_weights else CrossAttention(dim, heads, dropout)
        self.fuse = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.output_block = OutputBlock(dim, dropout) if output_block else nn.Identity()

    def forward(self, x, h_syn, h_sem, word_mask):
        sem = self.norm_sem(x + h_sem)
        syn = self.norm_syn(x + h_syn)
        allowed = attention_mask(word_mask, self.window)
        sem_att = sem + self.sem_to_syn(sem, syn, allowed)
        syn_att = syn + self.syn_to_sem(syn, sem, allowed)
        fused = self.dropout(self.fuse(torch.cat([sem_att, syn_att], dim=-1)))
        return self.output_block(fused) * word_mask.unsqueeze(-1).to(x.dtype)
