"""Syntactic and semantic graph convolutions over word features (B, W, M).

All graphs are dense (B, W, W) with zero rows/columns at padding, so padded positions never feed
real ones. Every op is batched: no Python loop over sentences.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gcn_layer(adj: torch.Tensor, x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """relu((W (A x) + b) / deg): D2E2S/ASGCN-style row-normalised propagation (A includes self loops)."""
    deg = adj.sum(-1, keepdim=True).clamp(min=1.0)
    return F.relu(linear(torch.bmm(adj, x)) / deg)


def gcn_stack(adj: torch.Tensor, x: torch.Tensor, linears: nn.ModuleList, dropout: nn.Dropout) -> torch.Tensor:
    """GCN layers over one graph, with dropout between them (none after the last), as in D2E2S."""
    for i, linear in enumerate(linears):
        x = gcn_layer(adj, x, linear)
        if i < len(linears) - 1:
            x = dropout(x)
    return x


class SyntacticGCN(nn.Module):
    """GCN over the dependency tree (undirected, self loops on real words, built once per sentence)."""

    def __init__(self, dim: int, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, dep_adj: torch.Tensor) -> torch.Tensor:
        # no mask needed: dep_adj has zero columns at padding, so padding never feeds a real word
        return gcn_stack(dep_adj.to(x.dtype), x, self.linears, self.dropout)


def attention_adjacency(scores: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W, W) raw scores -> per-head row-stochastic adjacency over real words.
    Padding keys get zero weight; padding rows are zeroed; the diagonal is replaced by 1 on real
    words only (D2E2S: remove self-attention, add the identity)."""
    key_pad = ~word_mask[:, None, None, :]
    probs = torch.softmax(scores.masked_fill(key_pad, torch.finfo(scores.dtype).min), dim=-1)
    W = word_mask.shape[1]
    eye = torch.eye(W, dtype=torch.bool, device=scores.device)
    real = word_mask[:, None, :, None] & word_mask[:, None, None, :]
    probs = probs.masked_fill(eye, 0.0) + (eye & real).to(probs.dtype)
    return probs * word_mask[:, None, :, None].to(probs.dtype)


class SemanticGCN(nn.Module):
    """D2E2S SemGCN: a multi-head attention graph (mean over heads), then GCN layers over it."""

    def __init__(self, dim: int, heads: int = 1, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"--attention_heads {heads} must divide the model width {dim}")
        self.heads = heads
        self.qk = nn.Linear(dim, 2 * dim)  # query and key projections fused into one matmul
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def head_scores(self, x: torch.Tensor) -> torch.Tensor:
        B, W, M = x.shape
        q, k = self.qk(x).view(B, W, 2, self.heads, M // self.heads).permute(2, 0, 3, 1, 4)
        # scaled before the product, not after: under --amp fp16 a product of unscaled 768-wide
        # vectors can pass fp16's maximum (65504), as it did in other DeBERTa-family code
        return (q * (M // self.heads) ** -0.5) @ k.transpose(-1, -2)  # (B, H, W, W)

    def adjacency(self, x: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        return attention_adjacency(self.head_scores(x), word_mask).mean(1)

    def forward(self, x: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        return gcn_stack(self.adjacency(x, word_mask), x, self.linears, self.dropout)


class EnhancedSemanticGCN(SemanticGCN):
    """--use_enhanced_semgcn: heads mixed by learned softmax weights instead of a mean (heads can
    specialise); a residual + LayerNorm around every GCN layer, so depth does not wash out the token
    identity and gradients reach the encoder unattenuated; dropout on every layer's update."""

    def __init__(self, dim: int, heads: int = 1, layers: int = 2, dropout: float = 0.1):
        super().__init__(dim, heads, layers, dropout)
        self.head_logits = nn.Parameter(torch.zeros(heads))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))

    def adjacency(self, x: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        per_head = attention_adjacency(self.head_scores(x), word_mask)
        weights = torch.softmax(self.head_logits, 0).to(per_head.dtype)
        return torch.einsum("bhij,h->bij", per_head, weights)

    def forward(self, x: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        adj = self.adjacency(x, word_mask)
        for linear, norm in zip(self.linears, self.norms):
            x = norm(x + self.dropout(gcn_layer(adj, x, linear)))
        return x
