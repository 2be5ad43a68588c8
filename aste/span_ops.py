"""Max-pooling over word ranges without copying the hidden states once per span.

A sparse table holds, for level j, the max over every window of 2**j words: table[j][b, t] =
max(h[b, t : t + 2**j]). Any range [l, r) is then the max of two (overlapping) windows of the same
level, j = floor(log2(r - l)). Building costs O(log W) elementwise passes over (B, W, D); a query is
two gathers. The same table answers span pooling (ranges up to --max_span_size) and the context
between an aspect and an opinion (any range), so no (batch x spans x tokens x hidden) tensor exists.
"""
from __future__ import annotations

import torch


class RangeMax:
    def __init__(self, h: torch.Tensor):
        """h: (B, W, D). Only ranges inside real words are ever queried, so padding never enters."""
        B, W, D = h.shape
        levels = [h]
        width = 1
        while 2 * width <= W:
            prev = levels[-1]
            # window of 2*width starting at t = max of the two width-windows at t and t+width;
            # the tail (t + 2*width > W) is never queried and just repeats prev.
            nxt = torch.cat([torch.maximum(prev[:, : W - width], prev[:, width:]), prev[:, W - width:]], dim=1)
            levels.append(nxt)
            width *= 2
        self.table = torch.stack(levels).reshape(-1, D)  # (L * B * W, D)
        self.B, self.W = B, W
        # floor(log2(length)) for length 0..W (entry 0 unused); exact integer arithmetic, no float log
        self.floor_log2 = torch.tensor([max(k.bit_length() - 1, 0) for k in range(W + 1)], device=h.device)

    def query(self, batch: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Max over words [start, end) of row `batch`, for 1-D index tensors; requires end > start."""
        level = self.floor_log2[end - start]
        base = level * (self.B * self.W) + batch * self.W
        # index_select: its backward is an index_add, much cheaper on CPU than advanced indexing's
        left = self.table.index_select(0, base + start)
        right = self.table.index_select(0, base + end - (1 << level))
        return torch.maximum(left, right)


def span_max_pool(h: torch.Tensor, spans: torch.Tensor, table: RangeMax | None = None) -> torch.Tensor:
    """spans: (N, 3) rows (batch, start, end) -> (N, D) max over h[batch, start:end]."""
    table = table or RangeMax(h)
    return table.query(spans[:, 0], spans[:, 1], spans[:, 2])


def between_max_pool(table: RangeMax, batch: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Max over the words strictly between two spans (rows start, end); zeros where they touch or overlap
    (SpERT's convention for an empty context)."""
    before = first[:, 1] <= second[:, 0]  # the first span ends before the second starts
    gap_start = torch.where(before, first[:, 1], second[:, 1])
    gap_end = torch.where(before, second[:, 0], first[:, 0])
    nonempty = gap_end > gap_start
    safe_start = torch.where(nonempty, gap_start, torch.zeros_like(gap_start))
    safe_end = torch.where(nonempty, gap_end, torch.ones_like(gap_end))
    pooled = table.query(batch, safe_start, safe_end)
    return pooled * nonempty.unsqueeze(-1).to(pooled.dtype)
