"""Activations rebuilt in the backward instead of kept (models/recompute.py): the same outputs and
bit-identical gradients as the plain encoder, with the rebuilt tensors actually used."""
from __future__ import annotations

import copy
import weakref

import pytest
import torch
import torch.utils.checkpoint

import models.recompute as recompute
from models.dropout import fast_dropout, scaled_dot_product_attention, use_fast_cpu_dropout
from models.recompute import LinearAfterActivation, recompute_feedforward_activation, recompute_saved


@pytest.fixture
def rebuilt_count(monkeypatch):
    """How many saved tensors the backward rebuilt from a recipe, per call site: the feed-forward
    activation (models/recompute.py) and the attention probabilities (models/dropout.py)."""
    count = {"feedforward": 0, "attention": 0}

    def counting(site, real):
        def patched(output, rebuild):
            def counted():
                count[site] += 1
                return rebuild()
            return real(output, counted)
        return patched

    real = recompute.recompute_saved
    monkeypatch.setattr(recompute, "recompute_saved", counting("feedforward", real))
    monkeypatch.setattr("models.dropout.recompute_saved", counting("attention", real))
    return count


def enable_checkpointing(encoder, use_reentrant: bool) -> None:
    if hasattr(encoder, "activation_checkpointing_enable"):  # transformers 5
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})


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
@pytest.mark.parametrize("checkpointing", [None, "non_reentrant"])  # reentrant: see the toy layer below
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
            enable_checkpointing(enc, use_reentrant=checkpointing == "reentrant")
    activation_outputs = []  # weak references: the graph must not keep the activation's output
    for m in changed.modules():
        if isinstance(m, LinearAfterActivation):
            m.activation.register_forward_hook(lambda mod, inp, out: activation_outputs.append(weakref.ref(out)))

    grads = []
    for enc in (plain, changed):
        torch.manual_seed(7)  # the same dropout masks in both
        out = enc(**batch).last_hidden_state
        if enc is changed and checkpointing is None:
            assert len(activation_outputs) == n_layers and all(ref() is None for ref in activation_outputs)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads.append((out.detach(), {n: p.grad for n, p in enc.named_parameters() if p.grad is not None}))
    (out_a, grad_a), (out_b, grad_b) = grads
    assert torch.equal(out_a, out_b)
    assert grad_a.keys() == grad_b.keys() and len(grad_a) > 10
    for name in grad_a:
        assert torch.equal(grad_a[name], grad_b[name]), name
    # rebuilt once per layer; under non-reentrant checkpointing (its own saved-tensor hook) never, so
    # that the checkpoint, not a recipe, decides what is kept. BERT's attention runs through
    # models/dropout.py in both encoders, DeBERTa's through its own code.
    expected = 0 if checkpointing == "non_reentrant" else n_layers
    assert rebuilt_count["feedforward"] == expected
    assert rebuilt_count["attention"] == (2 * expected if encoder_fixture == "tiny_bert_dir" else 0)
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
    assert rebuilt_count["attention"] == 1


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


def test_under_torch_compile_the_plain_linear_is_traced(rebuilt_count):
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
    assert rebuilt_count["feedforward"] == 0  # torch.compile's partitioner decides, not a recipe


def test_in_place_activation_is_left_in_place():
    layer = _Layer(torch.nn.ReLU(inplace=True))
    assert recompute_feedforward_activation(layer) == 0


def test_empty_and_partial_storage_outputs_are_kept_as_is():
    x = torch.randn(0, 4, requires_grad=True)
    with recompute_saved(torch.tanh(x), lambda: pytest.fail("must not rebuild")):
        (torch.tanh(x) @ torch.ones(4, 2, requires_grad=True)).sum().backward()
    base = torch.tanh(torch.randn(10, 4, requires_grad=True))
    prefix = base[:5]  # contiguous, offset 0, but only part of its storage
    with recompute_saved(prefix, lambda: pytest.fail("must not rebuild")):
        out = prefix @ torch.ones(4, 2, requires_grad=True)
    out.sum().backward()


def test_a_wrong_recipe_fails_loudly():
    x = torch.randn(3, 4, requires_grad=True)
    hidden = torch.tanh(x)
    with recompute_saved(hidden, lambda: torch.tanh(x).double()):
        out = hidden @ torch.ones(4, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="recompute_saved"):
        out.sum().backward()


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_checkpointed_layer_bit_identical(use_reentrant, rebuilt_count):
    """torch's checkpoint around a converted layer: reentrant checkpointing reruns the forward with
    grad on and no hook of its own, so the recipe serves the rerun; non-reentrant checkpointing keeps
    its own hook, and the recipe stays out of the way."""
    torch.manual_seed(0)
    layer = _Layer(torch.nn.GELU())
    ref = copy.deepcopy(layer)
    recompute_feedforward_activation(layer)
    x = torch.randn(2, 3, 4, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=use_reentrant)
    out.square().sum().backward()
    ref(x_ref).square().sum().backward()
    assert torch.equal(x.grad, x_ref.grad)
    assert torch.equal(layer.output.dense.weight.grad, ref.output.dense.weight.grad)
    assert rebuilt_count["feedforward"] == (1 if use_reentrant else 0)
