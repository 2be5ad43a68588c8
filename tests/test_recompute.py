"""Activations rebuilt in the backward instead of kept (models/recompute.py): the same outputs and
bit-identical gradients as the plain encoder, with the rebuilt tensors actually used."""
from __future__ import annotations

import copy
import weakref

import pytest
import torch

import models.recompute as recompute
from models.dropout import fast_dropout, scaled_dot_product_attention, use_fast_cpu_dropout
from models.recompute import LinearAfterActivation, recompute_feedforward_activation, recompute_saved


@pytest.fixture
def rebuilt_count(monkeypatch):
    """How many saved tensors the backward rebuilt from a recipe."""
    count = {"n": 0}
    real = recompute.recompute_saved

    def counting(output, rebuild):
        def counted():
            count["n"] += 1
            return rebuild()
        return real(output, counted)

    monkeypatch.setattr(recompute, "recompute_saved", counting)
    monkeypatch.setattr("models.dropout.recompute_saved", counting)
    return count


def test_recompute_saved_rebuilds_a_view_and_frees_the_output():
    x = torch.randn(4, 6, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    ref_x = x.detach().clone().requires_grad_()
    ref_w = w.detach().clone().requires_grad_()
    torch.nn.functional.linear(torch.tanh(ref_x), ref_w).square().sum().backward()

    hidden = torch.tanh(x)
    calls = []
    with recompute_saved(hidden, lambda: calls.append(1) or torch.tanh(x)):
        out = torch.nn.functional.linear(hidden, w)  # saves a (24, 8) view of hidden
    alive = weakref.ref(hidden)
    del hidden
    assert alive() is None  # nothing but the graph held it, and the graph holds the recipe
    out.square().sum().backward()
    assert calls == [1]
    assert torch.equal(x.grad, ref_x.grad) and torch.equal(w.grad, ref_w.grad)


def test_non_contiguous_output_is_kept_as_is():
    x = torch.randn(8, 6, requires_grad=True)
    hidden = torch.tanh(x).t()  # a transposed view: left alone
    with recompute_saved(hidden, lambda: pytest.fail("must not rebuild")):
        out = hidden @ torch.ones(8, 2)
    out.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("encoder_fixture", ["tiny_bert_dir", "tiny_deberta_dir"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_encoder_gradients_bit_identical(encoder_fixture, checkpointing, request, rebuilt_count):
    from models.encoder import load_encoder, load_tokenizer

    path = request.getfixturevalue(encoder_fixture)
    tokenizer = load_tokenizer(path)
    batch = tokenizer(["the pasta was delicious but the waiter was rude", "great sushi"], padding=True,
                      return_tensors="pt")
    plain = use_fast_cpu_dropout(load_encoder(path)).train()
    changed = use_fast_cpu_dropout(load_encoder(path)).train()
    changed.load_state_dict(plain.state_dict())
    n_layers = changed.config.num_hidden_layers
    assert recompute_feedforward_activation(changed) == n_layers
    assert recompute_feedforward_activation(changed) == 0  # idempotent
    assert sum(isinstance(m, LinearAfterActivation) for m in changed.modules()) == n_layers
    assert changed.state_dict().keys() == plain.state_dict().keys()
    if checkpointing:
        for enc in (plain, changed):
            (getattr(enc, "activation_checkpointing_enable", None) or enc.gradient_checkpointing_enable)()

    grads = []
    for enc in (plain, changed):
        torch.manual_seed(7)  # the same dropout masks in both
        out = enc(**batch).last_hidden_state
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads.append((out.detach(), {n: p.grad for n, p in enc.named_parameters() if p.grad is not None}))
    (out_a, grad_a), (out_b, grad_b) = grads
    assert torch.equal(out_a, out_b)
    assert grad_a.keys() == grad_b.keys() and len(grad_a) > 10
    for name in grad_a:
        assert torch.equal(grad_a[name], grad_b[name]), name
    assert rebuilt_count["n"] >= n_layers  # the feed-forward activations (and BERT's attention) were rebuilt
    with torch.no_grad():  # and inference is the same module
        assert torch.equal(plain.eval()(**batch).last_hidden_state, changed.eval()(**batch).last_hidden_state)


def test_attention_probabilities_rebuilt_bit_identical(rebuilt_count):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, requires_grad=True) for _ in range(3))
    allowed = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])[:, None, None, :]
    grads = []
    for rebuild in (False, True):
        torch.manual_seed(1)
        for t in (q, k, v):
            t.grad = None
        if rebuild:
            out = scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=0.3)
        else:  # the same steps, every tensor kept
            scores = (q @ k.transpose(-1, -2) * 0.5).masked_fill(~allowed, torch.finfo(q.dtype).min)
            out = fast_dropout(scores.softmax(-1), 0.3) @ v
        out.square().sum().backward()
        grads.append((out.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone()))
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    assert rebuilt_count["n"] >= 1


class _Layer(torch.nn.Module):
    """The shape recompute_feedforward_activation looks for (a BERT layer's feed-forward part)."""

    def __init__(self, act: torch.nn.Module):
        super().__init__()
        self.intermediate = torch.nn.Module()
        self.intermediate.dense, self.intermediate.intermediate_act_fn = torch.nn.Linear(4, 8), act
        self.output = torch.nn.Module()
        self.output.dense = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.output.dense(self.intermediate.intermediate_act_fn(self.intermediate.dense(x)))


def test_learned_activation_is_left_in_place():
    layer = _Layer(torch.nn.PReLU())
    keys = set(layer.state_dict())
    assert recompute_feedforward_activation(layer) == 0
    assert set(layer.state_dict()) == keys and type(layer.output.dense) is torch.nn.Linear


def test_under_torch_compile_the_plain_linear_is_traced():
    torch.manual_seed(0)
    layer = _Layer(torch.nn.GELU())
    ref = copy.deepcopy(layer)
    assert recompute_feedforward_activation(layer) == 1
    x = torch.randn(3, 4)
    compiled = torch.compile(layer, backend="eager")  # dynamo traces; no C++ compiler needed
    out = compiled(x)
    out.sum().backward()
    ref(x).sum().backward()
    torch.testing.assert_close(out, ref(x))
    torch.testing.assert_close(layer.output.dense.weight.grad, ref.output.dense.weight.grad)
