"""The cheaper CPU dropout (models/dropout.py): the same distribution and scaling as torch's
dropout, a gradient through the same mask, seeded masks, and attention that matches torch's SDPA."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.dropout import Dropout, drop_mask, fast_dropout, scaled_dot_product_attention, use_fast_cpu_dropout
from models.dropout import IMPLEMENTATION


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_on_even_and_odd_elements(p):
    # even and odd elements take the low and high 32-bit halves of one 64-bit draw: both must be uniform
    torch.manual_seed(0)
    n = 2_000_000
    dropped = drop_mask((n,), p).double()
    sigma = math.sqrt(p * (1 - p) / (n // 2))
    for half in (dropped[0::2], dropped[1::2]):
        assert abs(half.mean().item() - p) < 5 * sigma


def test_kept_values_scaled_dropped_zero_and_gradient_through_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 33, dtype=torch.float64, requires_grad=True)
    y = fast_dropout(x, 0.3)
    dropped = y == 0
    assert 0.2 < dropped.double().mean().item() < 0.4
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.7)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, torch.where(dropped, 0.0, upstream / 0.7))


def test_masks_follow_the_seed():
    x = torch.ones(1000)
    torch.manual_seed(5)
    a = fast_dropout(x, 0.5)
    torch.manual_seed(5)
    b = fast_dropout(x, 0.5)
    c = fast_dropout(x, 0.5)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_identity_in_eval_and_at_p_zero_zeros_at_p_one():
    x = torch.randn(7, 5)
    m = Dropout(0.4).eval()
    assert m(x) is x and fast_dropout(x, 0.0) is x
    assert isinstance(m, torch.nn.Dropout)
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))


def attention_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    B, H, L, d = 3, 2, 6, 4
    q, k, v = (torch.randn(B, H, L, d, generator=g, dtype=torch.float64) for _ in range(3))
    lengths = torch.tensor([6, 4, 1])
    allowed = (torch.arange(L)[None] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, L) real keys
    return q, k, v, allowed


def test_attention_math_path_equals_torch_sdpa_when_nothing_is_dropped():
    q, k, v, allowed = attention_inputs()
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    # p = 1e-12 rounds to a threshold of 0: the math path runs and drops nothing
    out = scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=1e-12)
    torch.testing.assert_close(out, ref)
    additive = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, attn_mask=additive, dropout_p=1e-12), ref)


def test_attention_dropout_drops_probabilities_with_the_mask_of_the_seed():
    q, k, v, allowed = attention_inputs(1)
    torch.manual_seed(3)
    out = scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=0.25)
    torch.manual_seed(3)
    dropped = drop_mask((3, 2, 6, 6), 0.25)
    probs = (q @ k.transpose(-1, -2) / 2).masked_fill(~allowed, float("-inf")).softmax(-1)
    torch.testing.assert_close(out, probs.masked_fill(dropped, 0) / 0.75 @ v)


@pytest.mark.parametrize("encoder_fixture", ["tiny_bert_dir", "tiny_deberta_dir"])
def test_encoder_with_fast_dropout_is_the_same_encoder(encoder_fixture, request):
    """Every nn.Dropout is swapped, eval outputs are bit-identical, and training with (almost) no
    dropout goes through the new attention path and gives the eval outputs."""
    from models.encoder import load_encoder, load_tokenizer

    path = request.getfixturevalue(encoder_fixture)
    encoder, tokenizer = load_encoder(path).eval(), load_tokenizer(path)
    batch = tokenizer(["the pasta was delicious but the waiter was rude", "great sushi"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        ref = encoder(**batch).last_hidden_state
    use_fast_cpu_dropout(encoder)
    if encoder_fixture == "tiny_bert_dir":
        assert encoder.config._attn_implementation == IMPLEMENTATION
    assert not any(type(m) is torch.nn.Dropout for m in encoder.modules())
    assert any(isinstance(m, Dropout) for m in encoder.modules())
    with torch.no_grad():
        assert torch.equal(encoder(**batch).last_hidden_state, ref)
        for m in encoder.modules():  # BERT's attention also reads its p from such a module
            if isinstance(m, torch.nn.Dropout):
                m.p = 1e-12
        out = encoder.train()(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(out[real], ref[real], atol=1e-5, rtol=1e-5)
