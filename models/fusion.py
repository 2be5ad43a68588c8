"""Fusion of the syntactic and semantic GCN branches: one interface, a registry keyed by --fusion.

Every module is called as ``fusion(x, h_syn, h_sem, word_mask) -> (B, W, M)``, where x is the
BiLSTM output the two GCNs read, and word_mask (B, W) is True on real words. Outputs at padding are
zero, and real positions never depend on padding.
"""
from __future__ import annotations

import torch
from torch import nn

from .dropout import Dropout, scaled_dot_product_attention
from .lstm import MaskedBiLSTM


class CrossAttention(nn.Module):
    """Multi-head attention of `query` over `context` through scaled_dot_product_attention (no
    attention matrix is kept, except when training on CPU, where dropout sends torch's SDPA to its
    math path too; models/dropout.py). Key and value projections are fused into one matmul."""

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
        out = scaled_dot_product_attention(q, k, v, attn_mask=allowed,
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


class TINFusion(nn.Module):
    """D2E2S's TIN: per-branch residual MLP + LayerNorm, concatenation, 2-layer BiLSTM, MLP."""

    def __init__(self, dim: int, **_):
        super().__init__()

        def residual_block():
            return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.LayerNorm(dim))

        self.syn_block, self.sem_block = residual_block(), residual_block()
        self.lstm = MaskedBiLSTM(2 * dim, dim, num_layers=2)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.LayerNorm(dim))

    def forward(self, x, h_syn, h_sem, word_mask):
        syn = self.syn_block(x + h_syn)
        sem = self.sem_block(x + h_sem)
        fused = self.lstm(torch.cat([syn, sem], dim=-1), word_mask)
        return self.mlp(fused) * word_mask.unsqueeze(-1).to(x.dtype)


class CrossAttentionFusion(nn.Module):
    """Bidirectional cross-attention: semantic queries syntactic and syntactic queries semantic,
    each with a residual; a linear fusion of the concatenation back to the model width."""

    def __init__(self, dim: int, heads: int = 8, share_weights: bool = False, window: int = 0,
                 dropout: float = 0.1, **_):
        super().__init__()
        self.window = window
        self.norm_sem, self.norm_syn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.sem_to_syn = CrossAttention(dim, heads, dropout)
        self.syn_to_sem = self.sem_to_syn if share_weights else CrossAttention(dim, heads, dropout)
        self.fuse = nn.Linear(2 * dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x, h_syn, h_sem, word_mask):
        sem = self.norm_sem(x + h_sem)
        syn = self.norm_syn(x + h_syn)
        allowed = attention_mask(word_mask, self.window)
        sem_att = sem + self.sem_to_syn(sem, syn, allowed)
        syn_att = syn + self.syn_to_sem(syn, sem, allowed)
        fused = self.dropout(self.fuse(torch.cat([sem_att, syn_att], dim=-1)))
        return fused * word_mask.unsqueeze(-1).to(x.dtype)


class LightweightCrossAttentionFusion(nn.Module):
    """One attention pass (semantic queries syntactic), 4 heads by default, one linear fusion."""

    def __init__(self, dim: int, heads: int = 4, window: int = 0, dropout: float = 0.1, **_):
        super().__init__()
        self.window = window
        self.norm_sem, self.norm_syn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.sem_to_syn = CrossAttention(dim, heads, dropout)
        self.fuse = nn.Linear(2 * dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x, h_syn, h_sem, word_mask):
        sem = self.norm_sem(x + h_sem)
        syn = self.norm_syn(x + h_syn)
        sem_att = sem + self.sem_to_syn(sem, syn, attention_mask(word_mask, self.window))
        fused = self.dropout(self.fuse(torch.cat([sem_att, syn], dim=-1)))
        return fused * word_mask.unsqueeze(-1).to(x.dtype)


FUSIONS = {
    "tin": TINFusion,
    "cross_attention": CrossAttentionFusion,
    "lightweight": LightweightCrossAttentionFusion,
}
DEFAULT_HEADS = {"cross_attention": 8, "lightweight": 4}


def build_fusion(name: str, dim: int, heads: int | None = None, share_weights: bool = False,
                 window: int = 0, dropout: float = 0.1) -> nn.Module:
    if name not in FUSIONS:
        raise ValueError(f"--fusion {name!r}: choose from {sorted(FUSIONS)}")
    kwargs = {"window": window, "share_weights": share_weights, "dropout": dropout}
    if name in DEFAULT_HEADS:
        kwargs["heads"] = heads or DEFAULT_HEADS[name]
    return FUSIONS[name](dim, **kwargs)
