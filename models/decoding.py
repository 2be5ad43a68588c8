"""From span and pair scores to triplets, vectorised: candidate pairs, and the overlap filters of
--overlap_filter (no Python loop over spans or pairs)."""
from __future__ import annotations

import torch

from .labels import ASPECT, OPINION

OVERLAP_FILTERS = ("none", "spans", "triplets")  # the choices of --overlap_filter
CHUNK = 2048  # rows of the pairwise comparison computed at once (bounds its memory)


def overlap_losers(group: torch.Tensor, start: torch.Tensor, end: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """(N,) bool: item i loses if another item of the same group has an overlapping [start, end) and
    a higher score (on a tie, the earlier item wins). Identical intervals count as overlapping.
    Unlike greedy non-maximum suppression, an item that itself lost still removes the weaker items it
    overlaps ([0,2) 0.9, [1,3) 0.8, [2,4) 0.7 keeps only [0,2)): one vectorised pass, no ordering."""
    n = group.shape[0]
    lose = torch.zeros(n, dtype=torch.bool, device=group.device)
    idx = torch.arange(n, device=group.device)
    for c in range(0, n, CHUNK):  # blocks of rows, so memory stays O(N x CHUNK)
        i = idx[c:c + CHUNK, None]
        conflict = ((group[i] == group[None]) & (start[i] < end[None]) & (start[None] < end[i])
                    & (i != idx[None]))
        beats = (score[None] > score[i]) | ((score[None] == score[i]) & (idx[None] < i))
        lose[c:c + CHUNK] = (conflict & beats).any(1)
    return lose


def triplet_overlap_losers(spans: torch.Tensor, pairs: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """(P,) bool for pairs (aspect, opinion) of span indices: a triplet loses to a better-scoring one
    with the same aspect and an overlapping opinion ("bread / top" against "bread / top notch"), or
    with the same opinion and an overlapping aspect."""
    a, o = pairs[:, 0], pairs[:, 1]
    opinion_side = overlap_losers(a, spans[o, 1], spans[o, 2], score)
    aspect_side = overlap_losers(o, spans[a, 1], spans[a, 2], score)
    return opinion_side | aspect_side


def enumerate_pairs(rows: torch.Tensor, label: torch.Tensor, score: torch.Tensor, batch_size: int,
                    max_pairs: int) -> tuple[torch.Tensor, int]:
    """All (aspect, opinion) index pairs within each batch row, vectorised.

    rows: (N,) batch row of each span, non-decreasing; label: (N,) predicted type. A row with more
    than max_pairs candidate pairs keeps the max_pairs with the highest aspect x opinion score.
    Returns (P, 2) span indices and the number of rows where the cap applied."""
    device = rows.device
    aspects = torch.nonzero(label == ASPECT).squeeze(1)
    opinions = torch.nonzero(label == OPINION).squeeze(1)
    n_op = torch.bincount(rows[opinions], minlength=batch_size)
    op_start = torch.cumsum(n_op, 0) - n_op
    reps = n_op[rows[aspects]]  # each aspect pairs with every opinion of its row
    a_idx = torch.repeat_interleave(aspects, reps)
    offset = torch.arange(a_idx.shape[0], device=device) - torch.repeat_interleave(torch.cumsum(reps, 0) - reps, reps)
    o_idx = opinions[op_start[rows[a_idx]] + offset]
    pairs = torch.stack([a_idx, o_idx], dim=1)
    per_row = torch.bincount(rows[a_idx], minlength=batch_size)
    capped = int((per_row > max_pairs).sum())
    if capped:
        pair_score = (score[a_idx] * score[o_idx]).double()
        # row ascending, then score descending: scores lie in [0, 1], so a gap of 2 between rows keeps them apart
        order = torch.argsort(rows[a_idx].double() * 2.0 - pair_score, stable=True)
        sorted_rows = rows[a_idx][order]
        first = torch.cumsum(per_row, 0) - per_row
        rank = torch.arange(order.shape[0], device=device) - first[sorted_rows]
        pairs = pairs[order[rank < max_pairs]]
    return pairs, capped
