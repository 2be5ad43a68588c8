"""Keep fewer activations for the backward pass by recomputing cheap elementwise results.

Autograd keeps every tensor an operation needs for its gradient. Some of them are the output of a
cheap elementwise step whose input is kept anyway: in a transformer layer, the feed-forward
activation's output (intermediate-size, kept by the second linear layer) is the activation of the
pre-activation (kept by the activation's own backward); the dropped-out attention probabilities
(kept by the product with the values) are the softmax output (kept by the softmax's backward) times
the dropout mask (kept by the dropout's backward). `recompute_saved` has autograd store a recipe
instead of such a tensor and rebuild it when the backward needs it. The backward runs the same
operations on the same values as before, so results are bit-identical; only the peak memory of a
training step falls (scripts/benchmark_memory.py), at the cost of one elementwise pass per tensor.

Where: the feed-forward activation of BERT- and DeBERTa-style encoders from transformers, on any
device (`recompute_feedforward_activation(encoder)`); the attention probabilities where this project
computes attention with dropout itself, i.e. when training on CPU (models/dropout.py: BERT-family
encoders on "sdpa" attention, and the cross-attention fusion modules). Nothing is rebuilt under
torch.compile (its partitioner decides what to keep) or inside another saved-tensor hook, e.g.
non-reentrant activation checkpointing (`--grad_checkpointing` on transformers 5): autograd applies
only the innermost hook, so ours would take the tensors out of the checkpoint.
"""
from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class _Recipe(NamedTuple):
    recompute: Callable[[], torch.Tensor]
    full_size: torch.Size  # of the recomputed tensor
    dtype: torch.dtype
    size: torch.Size  # of the view that was saved
    stride: tuple[int, ...]
    offset: int


def _outer_saved_tensor_hooks_active() -> bool:
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)  # private; torch >= 2.0
    return top is not None and top(False) is not None


def can_recompute_saved(t: torch.Tensor) -> bool:
    """Whether recompute_saved should serve a tensor that an operation is about to save for backward:
    grad is on, t is in the graph, and neither torch.compile nor an outer saved-tensor hook (activation
    checkpointing, CPU offload) decides what is kept."""
    return (torch.is_grad_enabled() and t.requires_grad and not torch.compiler.is_compiling()
            and not _outer_saved_tensor_hooks_active())


@contextlib.contextmanager
def recompute_saved(output: torch.Tensor, recompute: Callable[[], torch.Tensor]):
    """Inside the block, an operation that saves `output` (or a view of it) for its backward stores
    `recompute` instead; the backward calls it (without grad) to rebuild the tensor. `recompute` must
    return the same values in a contiguous tensor of output's shape, and whatever it reads must be
    kept alive by the graph anyway, or the saving is lost. Where can_recompute_saved says no, and for a
    non-contiguous, partial-storage or empty output (an empty tensor has no storage address to
    recognise it by), the block runs without hooks."""
    whole_storage = output.untyped_storage().nbytes() == output.numel() * output.element_size()
    if (not can_recompute_saved(output) or output.numel() == 0
            or not (output.is_contiguous() and output.storage_offset() == 0 and whole_storage)):
        yield
        return
    # autograd keeps the pack hook as long as the saved tensor, so the hook must not hold `output`
    ptr, nbytes = output.untyped_storage().data_ptr(), output.untyped_storage().nbytes()
    dtype, device, full_size = output.dtype, output.device, output.shape

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        if s.data_ptr() == ptr and s.nbytes() == nbytes and t.dtype == dtype and t.device == device:
            return _Recipe(recompute, full_size, dtype, t.size(), t.stride(), t.storage_offset())
        return t

    def unpack(saved):
        if not isinstance(saved, _Recipe):
            return saved
        with torch.no_grad():
            rebuilt = saved.recompute()
        if rebuilt.shape != saved.full_size or rebuilt.dtype != saved.dtype or not rebuilt.is_contiguous():
            raise RuntimeError(f"recompute_saved: the recipe gave {rebuilt.dtype} {tuple(rebuilt.shape)}, "
                               f"expected a contiguous {saved.dtype} {tuple(saved.full_size)}")
        return rebuilt.as_strided(saved.size, saved.stride, saved.offset)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


class LinearAfterActivation(nn.Linear):
    """nn.Linear applied to activation(x), with the activation's output rebuilt in the backward
    instead of kept: the encoder's feed-forward activation moved from its intermediate module into
    the following linear layer (same parameters, same state-dict keys, same results)."""

    activation: nn.Module

    def forward(self, pre_activation: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(pre_activation)
        with recompute_saved(hidden, lambda: self.activation(pre_activation)):
            return F.linear(hidden, self.weight, self.bias)


def recompute_feedforward_activation(encoder: nn.Module) -> int:
    """In place, for every BERT/DeBERTa-style layer (an `intermediate` module with `dense` and
    `intermediate_act_fn`, an `output` module with `dense`, and output.dense applied first to the
    intermediate output, as in transformers' BERT, DeBERTa-v2/v3 and their relatives): move the
    activation into a LinearAfterActivation. Activations with parameters or buffers stay where they
    are (their state-dict keys would move), and so do in-place ones; the activation must be
    deterministic (all of transformers' are). Returns the number of layers changed; other encoders are left as they are."""
    changed = 0
    for layer in list(encoder.modules()):
        intermediate, output = getattr(layer, "intermediate", None), getattr(layer, "output", None)
        act = getattr(intermediate, "intermediate_act_fn", None)
        dense = getattr(output, "dense", None)
        if not isinstance(act, nn.Module) or type(dense) is not nn.Linear or isinstance(act, nn.Identity):
            continue
        if any(True for _ in act.parameters()) or any(True for _ in act.buffers()):
            continue  # a learned activation (PReLU, xIELU) would move its state-dict keys
        if getattr(act, "inplace", False):
            continue  # rebuilding it would overwrite the pre-activation its own backward reads
        if type(getattr(intermediate, "dense", None)) is not nn.Linear:
            continue
        intermediate.intermediate_act_fn = nn.Identity()
        dense.__class__ = LinearAfterActivation  # keeps the Parameter objects and the state-dict keys
        dense.activation = act
        changed += 1
    return changed
