"""Multi-head attention of one branch over another, and the mask both cross-attention fusions use."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
