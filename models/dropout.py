"""Dropout with a cheaper random mask on CPU.

On CPU, torch's dropout draws its mask with `bernoulli_`: one double-precision uniform per element
from a serial Mersenne Twister; in a profile of cross-attention training steps on this project's
2-core machine it was the costliest operation after the matrix products (most of the dropout layers
are in the encoder). Here one int64 `random_` gives the bits for two elements: each 32-bit half is
compared with round(p * 2^32), so an element is dropped with probability p (exact to 2^-32) and the kept
ones are scaled by 1 / (1 - p), as in torch. The bits come from torch's default CPU generator,
so `torch.manual_seed` and the RNG state saved in checkpoints still fix every mask.

On CUDA (and for p = 0 or 1) torch's own dropout runs unchanged: its fused kernel is already fast.
The masks differ from torch's for the same seed, so runs are not bit-identical to runs with
`nn.Dropout`; the distribution is the same.

Encoders from transformers get it through `use_fast_cpu_dropout(encoder)`: every `nn.Dropout`
module is replaced, and BERT-family attention (which passes its dropout probability to
`scaled_dot_product_attention` instead of calling a module) runs through `attention_with_dropout`,
registered as the attention implementation "sdpa_fast_cpu_dropout". In that path the dropped-out
probabilities are rebuilt in the backward pass instead of kept (models/recompute.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .recompute import recompute_saved

_INT32_MIN = -(2 ** 31)


def drop_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean mask, True where an element is dropped, each with probability p (0 <= p < 1)."""
    n = 1
    for s in shape:
        n *= s
    # random_(-2**63, None) draws from the full 64-bit range, so both 32-bit halves are uniform
    bits = torch.empty((n + 1) // 2, dtype=torch.int64, device=device).random_(-(2 ** 63), None)
    halves = bits.view(torch.int32)[:n].view(shape)
    return halves < _INT32_MIN + min(round(p * 2 ** 32), 2 ** 32 - 1)  # p within 2^-33 of 1: 1 - 2^-32


def _drop_scale(x: torch.Tensor, dropped: torch.Tensor, scale: float) -> torch.Tensor:
    return (x * scale).masked_fill_(dropped, 0)


class _DropScale(torch.autograd.Function):
    """x * scale with dropped elements zeroed; saves only the boolean mask for the backward."""

    @staticmethod
    def forward(ctx, x, dropped, scale):
        ctx.save_for_backward(dropped)
        ctx.scale = scale
        return _drop_scale(x, dropped, scale)

    @staticmethod
    def backward(ctx, grad):
        (dropped,) = ctx.saved_tensors
        return (grad * ctx.scale).masked_fill_(dropped, 0), None, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout with the cheaper mask on CPU (see the module docstring)."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p >= 1:
        return F.dropout(x, p, training=True)
    return _DropScale.apply(x, drop_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """nn.Dropout with the cheaper CPU mask (a subclass, so isinstance checks and p keep working)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 scale: float | None = None) -> torch.Tensor:
    """F.scaled_dot_product_attention, except when it drops on CPU. torch then takes its math path
    anyway (scores, softmax, a bernoulli_ mask, matmul); the same steps are written out here with the
    cheaper mask. attn_mask: boolean (True = attend) or additive float, broadcastable to the scores."""
    if dropout_p == 0 or query.device.type != "cpu":
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              scale=scale)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attn_mask
    probs = scores.softmax(-1)
    if dropout_p >= 1:  # everything dropped: drop_mask takes p < 1 only
        return torch.matmul(fast_dropout(probs, dropout_p), value)
    dropped, scale_kept = drop_mask(probs.shape, dropout_p, probs.device), 1.0 / (1.0 - dropout_p)
    kept_probs = _DropScale.apply(probs, dropped, scale_kept)
    # the softmax keeps probs and the dropout its mask: the product with the values need not keep
    # kept_probs too (models/recompute.py)
    with recompute_saved(kept_probs, lambda: _drop_scale(probs, dropped, scale_kept)):
        return torch.matmul(kept_probs, value)


def attention_with_dropout(module, query, key, value, attention_mask, dropout: float = 0.0,
                           scaling: float | None = None, **kwargs):
    """transformers attention function: transformers' "sdpa" unchanged, except training on CPU with
    attention dropout (see scaled_dot_product_attention above). Encoders only: causal attention is
    left to "sdpa"."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = kwargs.get("is_causal", getattr(module, "is_causal", False))
    if dropout == 0 or query.device.type != "cpu" or causal:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    out = scaled_dot_product_attention(query, key, value, attention_mask, dropout, scaling)
    return out.transpose(1, 2).contiguous(), None


IMPLEMENTATION = "sdpa_fast_cpu_dropout"


def use_fast_cpu_dropout(encoder: nn.Module) -> nn.Module:
    """Swap the encoder's dropout for the cheaper CPU mask, in place (see the module docstring).
    Returns the encoder. Without transformers' AttentionInterface (transformers < 4.48), or for an
    encoder not on "sdpa" attention, the attention-probability dropout stays torch's."""
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p).train(child.training))
    config = getattr(encoder, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return encoder
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:
        return encoder
    AttentionInterface.register(IMPLEMENTATION, attention_with_dropout)
    AttentionMaskInterface.register(IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    config._attn_implementation = IMPLEMENTATION
    return encoder
