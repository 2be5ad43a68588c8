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

Encoders from transformers get it for their feed-forward activation through
`recompute_feedforward_activation(encoder)`; the attention probabilities in models/dropout.py.
"""
from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class _Recipe(NamedTuple):
    recompute: Callable[[], torch.Tensor]
    size: torch.Size
    stride: tuple[int, ...]
    offset: int


@contextlib.contextmanager
def recompute_saved(output: torch.Tensor, recompute: Callable[[], torch.Tensor]):
    """Inside the block, an operation that saves `output` (or a view of it) for its backward stores
    `recompute` instead; the backward calls it (without grad) to rebuild the tensor. `recompute` must
    return the same values in a contiguous tensor of output's shape, and whatever it reads must be
    kept alive by the graph anyway, or the saving is lost. A non-contiguous output is left alone."""
    if not (output.is_contiguous() and output.storage_offset() == 0):
        yield
        return
    # autograd keeps the pack hook as long as the saved tensor, so the hook must not hold `output`
    ptr, nbytes = output.untyped_storage().data_ptr(), output.untyped_storage().nbytes()
    dtype, device = output.dtype, output.device

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        if s.data_ptr() == ptr and s.nbytes() == nbytes and t.dtype == dtype and t.device == device:
            return _Recipe(recompute, t.size(), t.stride(), t.storage_offset())
        return t

    def unpack(saved):
        if not isinstance(saved, _Recipe):
            return saved
        with torch.no_grad():
            rebuilt = saved.recompute()
        return rebuilt.as_strided(saved.size, saved.stride, saved.offset)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def needs_saving(t: torch.Tensor) -> bool:
    """Whether an operation on t would save it for a backward pass that recompute_saved can serve.
    Not under torch.compile: its partitioner decides itself what to keep and what to recompute."""
    return torch.is_grad_enabled() and t.requires_grad and not torch.compiler.is_compiling()


class LinearAfterActivation(nn.Linear):
    """nn.Linear applied to activation(x), with the activation's output rebuilt in the backward
    instead of kept: the encoder's feed-forward activation moved from its intermediate module into
    the following linear layer (same parameters, same state-dict keys, same results)."""

    activation: nn.Module

    def forward(self, pre_activation: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(pre_activation)
        if not needs_saving(hidden):
            return F.linear(hidden, self.weight, self.bias)
        with recompute_saved(hidden, lambda: self.activation(pre_activation)):
            return F.linear(hidden, self.weight, self.bias)


def recompute_feedforward_activation(encoder: nn.Module) -> int:
    """In place, for every BERT/DeBERTa-style layer (an `intermediate` module with `dense` and
    `intermediate_act_fn`, an `output` module with `dense`, and output.dense applied first to the
    intermediate output, as in transformers' BERT, DeBERTa-v2/v3 and their relatives): move the
    activation into a LinearAfterActivation. Activations with parameters or buffers stay where they
    are (their state-dict keys would move); the activation must be deterministic (all of
    transformers' are). Returns the number of layers changed; other encoders are left as they are."""
    changed = 0
    for layer in list(encoder.modules()):
        intermediate, output = getattr(layer, "intermediate", None), getattr(layer, "output", None)
        act = getattr(intermediate, "intermediate_act_fn", None)
        dense = getattr(output, "dense", None)
        if not isinstance(act, nn.Module) or type(dense) is not nn.Linear or isinstance(act, nn.Identity):
            continue
        if any(True for _ in act.parameters()) or any(True for _ in act.buffers()):
            continue  # a learned activation (PReLU, xIELU) would move its state-dict keys
        if type(getattr(intermediate, "dense", None)) is not nn.Linear:
            continue
        intermediate.intermediate_act_fn = nn.Identity()
        dense.__class__ = LinearAfterActivation  # keeps the Parameter objects and the state-dict keys
        dense.activation = act
        changed += 1
    return changed
