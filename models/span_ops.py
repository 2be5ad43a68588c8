"""Max-pooling over word ranges without copying the hidden states once per span.

A sparse table holds, for level j, the max over every window of 2**j words: table[j][b, t] =
max(h[b, t : t + 2**j]). Any range [l, r) is then the max of two (overlapping) windows of the same
level, j = floor(log2(r - l)). Building costs O(log W) elementwise passes over (B, W, D); a query is
two gathers. The same table answers span pooling (ranges up to --max_span_size) and the context
between an aspect and an opinion (any range), so no (batch x spans x tokens x hidden) tensor exists.

Gradients: the table also records, per element, which word holds the maximum, so a query's backward
is one scatter-add of its output gradient straight into h. (Differentiating through the table's
torch.maximum ops instead cost more than the rest of the span and pair heads together on CPU: each
maximum's backward builds several masks to split ties.) A tie between two different words sends
the gradient to the earlier one, as max-pooling does; the same word reached by both windows of a
query, the common case, gets the whole gradient either way.
"""
from __future__ import annotations

import torch


class _Query(torch.autograd.Function):
    """out = max(values[left], values[right]) elementwise; d out / d h routed to the argmax words."""

    @staticmethod
    def forward(ctx, h, values, sources, left, right):
        lv, rv = values.index_select(0, left), values.index_select(0, right)
        take_left = lv >= rv
        ctx.save_for_backward(torch.where(take_left, sources.index_select(0, left), sources.index_select(0, right)))
        ctx.h_shape = h.shape
        return torch.where(take_left, lv, rv)

    @staticmethod
    def backward(ctx, grad):
        (source,) = ctx.saved_tensors
        B, W, D = ctx.h_shape
        grad_h = grad.new_zeros(B * W, D).scatter_add_(0, source.long(), grad)
        return grad_h.view(B, W, D), None, None, None, None


class RangeMax:
    def __init__(self, h: torch.Tensor):
        """h: (B, W, D). Only ranges inside real words are ever queried, so padding never enters."""
        B, W, D = h.shape
        self.h, self.B, self.W = h, B, W
        track = torch.is_grad_enabled() and h.requires_grad
        with torch.no_grad():
            # written level by level into one preallocated table (no per-level copies to concatenate)
            levels = W.bit_length()  # windows of 1, 2, 4, ... <= W words
            values = torch.empty(levels, B, W, D, dtype=h.dtype, device=h.device)
            values[0] = h
            # flat word index b * W + t of each element's maximum (int32 halves the table's memory)
            sources = torch.empty(levels, B, W, D, dtype=torch.int32, device=h.device) if track else None
            if track:
                sources[0] = torch.arange(B * W, device=h.device, dtype=torch.int32).view(B, W, 1)
            for j in range(1, levels):
                # window of 2w starting at t = max of the two w-windows at t and t + w; the tail
                # (t + 2w > W) is never queried and just repeats the previous level.
                w = 1 << (j - 1)
                a, b = values[j - 1, :, : W - w], values[j - 1, :, w:]
                take_a = a >= b
                torch.where(take_a, a, b, out=values[j, :, : W - w])
                values[j, :, W - w:] = values[j - 1, :, W - w:]
                if track:
                    torch.where(take_a, sources[j - 1, :, : W - w], sources[j - 1, :, w:], out=sources[j, :, : W - w])
                    sources[j, :, W - w:] = sources[j - 1, :, W - w:]
            self.values = values.view(-1, D)  # (L * B * W, D)
            self.sources = sources.view(-1, D) if track else None
        # floor(log2(length)) for length 0..W (entry 0 unused), made on the device (no host-to-device copy,
        # which would wait for the GPU). Exact: frexp reads the float's binary exponent, no rounded log.
        lengths = torch.arange(W + 1, device=h.device, dtype=torch.float32)
        self.floor_log2 = (torch.frexp(lengths).exponent - 1).clamp(min=0).long()

    def query(self, batch: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Max over words [start, end) of row `batch`, for 1-D index tensors; requires end > start."""
        level = self.floor_log2[end - start]
        base = level * (self.B * self.W) + batch * self.W
        left, right = base + start, base + end - (1 << level)
        if self.sources is None:  # built without gradients: plain values
            return torch.maximum(self.values.index_select(0, left), self.values.index_select(0, right))
        return _Query.apply(self.h, self.values, self.sources, left, right)


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
