"""Span and span-pair classifiers (SpERT-style), on flat lists of spans and pairs.

Span representation: [sentence context; max-pooled span; width embedding] -> {none, aspect, opinion}.
Pair representation: [max-pooled words between the spans; aspect span; opinion span; both width
embeddings] -> one sigmoid per sentiment (POS, NEG, NEU).
Dropout (--prop_drop) is applied once to the word features both heads pool from (D2E2S applied it to
every span and pair representation: the same regulariser on 5-20x more elements).
"""
from __future__ import annotations

import torch
from torch import nn

from .span_ops import RangeMax, between_max_pool

MAX_WIDTH_EMBEDDINGS = 100


class SpanClassifier(nn.Module):
    def __init__(self, dim: int, width_dim: int, num_types: int = 3):
        super().__init__()
        self.width = nn.Embedding(MAX_WIDTH_EMBEDDINGS, width_dim)
        self.classifier = nn.Linear(2 * dim + width_dim, num_types)

    def width_embedding(self, spans: torch.Tensor) -> torch.Tensor:
        # widths past the table (spans of 100+ words) share its last row
        return self.width((spans[:, 2] - spans[:, 1]).clamp(max=MAX_WIDTH_EMBEDDINGS - 1))

    def forward(self, table: RangeMax, spans: torch.Tensor, sentence_ctx: torch.Tensor):
        """spans: (N, 3) rows (batch, start, end). Returns logits (N, types), pooled spans (N, M),
        width embeddings (N, width_dim)."""
        pooled = table.query(spans[:, 0], spans[:, 1], spans[:, 2])
        width = self.width_embedding(spans)
        logits = self.classifier(torch.cat([sentence_ctx.index_select(0, spans[:, 0]), pooled, width], dim=-1))
        return logits, pooled, width


class PairClassifier(nn.Module):
    def __init__(self, dim: int, width_dim: int, num_sentiments: int = 3):
        super().__init__()
        self.classifier = nn.Linear(3 * dim + 2 * width_dim, num_sentiments)

    def forward(self, table: RangeMax, spans: torch.Tensor, pooled: torch.Tensor, width: torch.Tensor,
                pairs: torch.Tensor) -> torch.Tensor:
        """pairs: (P, 2) indices into `spans` (aspect, opinion) of the same batch row -> logits (P, 3)."""
        a, o = pairs[:, 0], pairs[:, 1]
        between = between_max_pool(table, spans[a, 0], spans[a, 1:], spans[o, 1:])
        rep = torch.cat([between, pooled.index_select(0, a), pooled.index_select(0, o), width.index_select(0, a),
                         width.index_select(0, o)], dim=-1)
        return self.classifier(rep)
