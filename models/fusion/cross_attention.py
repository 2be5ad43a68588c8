"""Bidirectional cross-attention fusion (--fusion cross_attention, 8 heads by default), and what the
attention fusions share (attention, mask, output block, options). Each branch is added to x and
normalised; each queries the other, with a residual; a linear layer fuses the concatenation back to
the model width."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import fusion_option, register_fusion

HEADS = fusion_option("cross_attention_heads", int, "attention heads of an attention fusion", minimum=1)
WINDOW = fusion_option("cross_attention_window", int, "words attend only within this distance (0 = global)",
                       minimum=0)
OUTPUT_BLOCK = fusion_option(
    "fusion_output_block", bool, "the fusion ends in LayerNorm + feed-forward with residual + LayerNorm, as TIN "
    "ends in an MLP and a LayerNorm (on for cross_attention: it raised 14res dev over 3 seeds, git show "
    "3086929:Results/accuracy.md; off for lightweight, not measured)")
SHARED = fusion_option("share_cross_attention_weights", bool, "both attention directions share one set of projections")


class CrossAttention(nn.Module):
    """Multi-head attention of `query` over `context` through torch's scaled_dot_product_attention
    (which picks a fused kernel where it can). Key and value projections are one matmul."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"--cross_attention_heads {heads} must divide the model width {dim}")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, W, M = query.shape
        q = self.q(query).view(B, W, self.heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(B, W, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(B, W, M))


def attention_mask(word_mask: torch.Tensor, window: int = 0) -> torch.Tensor:
    """(B, 1, W, W) boolean 'may attend': real keys only, and within `window` words if window > 0.
    Rows of padding queries allow every key so that no softmax row is empty (no NaN); their outputs
    are zeroed afterwards anyway."""
    allowed = word_mask[:, None, None, :].expand(-1, 1, word_mask.shape[1], -1)
    if window > 0:
        pos = torch.arange(word_mask.shape[1], device=word_mask.device)
        allowed = allowed & ((pos[:, None] - pos[None, :]).abs() <= window)
    return allowed | ~word_mask[:, None, :, None]


class OutputBlock(nn.Module):
    """--fusion_output_block: LayerNorm on a fusion's output, then a transformer-style feed-forward
    (dim -> 2 dim -> dim) with a residual and LayerNorm, as TIN ends in an MLP and a LayerNorm."""

    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__()
        self.norm_in, self.norm_out = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(x)
        return self.norm_out(x + self.ffn(x))


@register_fusion("cross_attention")
class CrossAttentionFusion(nn.Module):
    defaults = {HEADS: 8, SHARED: False, WINDOW: 0, OUTPUT_BLOCK: True}

    def __init__(self, dim: int, dropout: float = 0.1, cross_attention_heads: int = 8,
                 share_cross_attention_weights: bool = False, cross_attention_window: int = 0,
                 fusion_output_block: bool = True, bidirectional: bool = True):
        super().__init__()
        self.window = cross_attention_window
        self.norm_sem, self.norm_syn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.sem_to_syn = CrossAttention(dim, cross_attention_heads, dropout)
        self.syn_to_sem = None
        if bidirectional:
            self.syn_to_sem = (self.sem_to_syn if share_cross_attention_weights
                               else CrossAttention(dim, cross_attention_heads, dropout))
        self.fuse = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.output_block = OutputBlock(dim, dropout) if fusion_output_block else nn.Identity()

    def forward(self, x, h_syn, h_sem, word_mask):
        sem = self.norm_sem(x + h_sem)
        syn = self.norm_syn(x + h_syn)
        allowed = attention_mask(word_mask, self.window)
        sem_att = sem + self.sem_to_syn(sem, syn, allowed)
        syn_att = syn if self.syn_to_sem is None else syn + self.syn_to_sem(syn, sem, allowed)
        fused = self.dropout(self.fuse(torch.cat([sem_att, syn_att], dim=-1)))
        return self.output_block(fused) * word_mask.unsqueeze(-1).to(x.dtype)
