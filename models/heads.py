"""Span and span-pair classifiers (SpERT-style), on flat lists of spans and pairs.

Span representation: [sentence context; max-pooled span; width embedding], plus the span's first and
last word with --span_boundary -> {none, aspect, opinion}.
Pair representation: [max-pooled words between the spans; aspect span; opinion span; both width
embeddings], plus an embedding of the distance between them with --pair_distance_embedding D
-> one sigmoid per sentiment (POS, NEG, NEU). "Span" here is the span's pooled vector (with its
boundary words when those are on).
Dropout (--prop_drop) is applied once to the word features both heads pool from (D2E2S applied it to
every span and pair representation: the same regulariser on 5-20x more elements).
"""
from __future__ import annotations

import torch
from torch import nn

from .span_ops import RangeMax, between_max_pool

MAX_WIDTH_EMBEDDINGS = 100
# word gaps between aspect and opinion, bucketed: 0, 1, 2, 3, 4, 5-7, 8-15, 16-31, 32+; x2 for which comes first.
# Adjacent and overlapping spans both have gap 0.
DISTANCE_EDGES = torch.tensor([1, 2, 3, 4, 5, 8, 16, 32])
DISTANCE_BUCKETS = 2 * (len(DISTANCE_EDGES) + 1)

class SpanClassifier(nn.Module):
    def __init__(self, dim: int, width_dim: int, num_types: int = 3, boundary: bool = False):
        super().__init__()
        self.boundary = boundary
        self.span_dim = 3 * dim if boundary else dim  # what the pair head receives per span
        self.width = nn.Embedding(MAX_WIDTH_EMBEDDINGS, width_dim)
        self.classifier = nn.Linear(dim + self.span_dim + width_dim, num_types)

    def forward(self, table: RangeMax, spans: torch.Tensor, sentence_ctx: torch.Tensor):
        """spans: (N, 3) rows (batch, start, end). Returns logits (N, types), span vectors
        (N, span_dim), width embeddings (N, width_dim)."""
        pooled = table.query(spans[:, 0], spans[:, 1], spans[:, 2])
        if self.boundary:
            words = table.h.reshape(-1, table.h.shape[-1])
            first = words.index_select(0, spans[:, 0] * table.W + spans[:, 1])
            last = words.index_select(0, spans[:, 0] * table.W + spans[:, 2] - 1)
            pooled = torch.cat([pooled, first, last], dim=-1)
        # widths past the table (spans of 100+ words) share its last row
        width = self.width((spans[:, 2] - spans[:, 1]).clamp(max=MAX_WIDTH_EMBEDDINGS - 1))
        logits = self.classifier(torch.cat([sentence_ctx.index_select(0, spans[:, 0]), pooled, width], dim=-1))
        return logits, pooled, width


def distance_bucket(aspect: torch.Tensor, opinion: torch.Tensor, edges: torch.Tensor = DISTANCE_EDGES) -> torch.Tensor:
    """Bucket of the word gap between two (start, end) spans, and whether the opinion comes first."""
    opinion_first = opinion[:, 1] <= aspect[:, 0]
    gap = torch.where(opinion_first, aspect[:, 0] - opinion[:, 1], (opinion[:, 0] - aspect[:, 1]).clamp(min=0))
    bucket = torch.bucketize(gap, edges, right=True)
    return bucket + opinion_first.long() * (len(DISTANCE_EDGES) + 1)


class PairClassifier(nn.Module):
    def __init__(self, dim: int, span_dim: int, width_dim: int, num_sentiments: int = 3, distance_dim: int = 0):
        super().__init__()
        self.distance = nn.Embedding(DISTANCE_BUCKETS, distance_dim) if distance_dim else None
        # moved with the module, so no host-to-device copy (which waits for the GPU) per forward pass;
        # not saved in checkpoints
        self.register_buffer("distance_edges", DISTANCE_EDGES.clone(), persistent=False)
        self.classifier = nn.Linear(dim + 2 * span_dim + 2 * width_dim + distance_dim, num_sentiments)

    def forward(self, table: RangeMax, spans: torch.Tensor, pooled: torch.Tensor, width: torch.Tensor,
                pairs: torch.Tensor) -> torch.Tensor:
        """pairs: (P, 2) indices into `spans` (aspect, opinion) of the same batch row -> logits (P, 3)."""
        a, o = pairs[:, 0], pairs[:, 1]
        between = between_max_pool(table, spans[a, 0], spans[a, 1:], spans[o, 1:])
        parts = [between, pooled.index_select(0, a), pooled.index_select(0, o), width.index_select(0, a),
                 width.index_select(0, o)]
        if self.distance is not None:
            parts.append(self.distance(distance_bucket(spans[a, 1:], spans[o, 1:], self.distance_edges)))
        return self.classifier(torch.cat(parts, dim=-1))
