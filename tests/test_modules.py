"""GCNs and the full model: padding invariance, gradients, shapes."""
import pytest
import torch

from conftest import toy_sentences
from helpers import batch_of, padded_pair, tiny_model
from models.gcn import EnhancedSemanticGCN, SemanticGCN, SyntacticGCN



@pytest.mark.parametrize("gcn_cls", [SemanticGCN, EnhancedSemanticGCN])
def test_semantic_gcn_padding_and_gradients(gcn_cls):
    torch.manual_seed(0)
    gcn = gcn_cls(32, heads=4, layers=2).eval()
    (xs, _, mask), (xs_p, _, mask_p) = padded_pair(4, 10, 32, pad=5)
    out, out_p = gcn(xs[0], mask), gcn(xs_p[0], mask_p)
    assert torch.allclose(out[mask], out_p[:, :10][mask], atol=1e-5)
    adj = gcn.adjacency(xs[0], mask)
    assert torch.all(adj[~mask] == 0) and torch.all(adj.transpose(1, 2)[~mask] == 0)  # padding rows/columns
    diag = torch.diagonal(adj, dim1=1, dim2=2)
    assert torch.all(diag[mask] == 1) and torch.all(diag[~mask] == 0)  # self loops on real words only
    gcn.train()
    gcn(xs[0], mask).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gcn.parameters())


def test_syntactic_gcn_padding():
    torch.manual_seed(0)
    gcn = SyntacticGCN(32).eval()
    (xs, adj, mask), (xs_p, adj_p, mask_p) = padded_pair(4, 10, 32, pad=5)
    assert torch.allclose(gcn(xs[0], adj, mask)[mask], gcn(xs_p[0], adj_p, mask_p)[:, :10][mask], atol=1e-6)


@pytest.mark.parametrize("fusion", ["tin", "cross_attention", "lightweight"])
@pytest.mark.parametrize("enhanced", [False, True])
def test_full_model_padding_invariance(tiny_bert_dir, fusion, enhanced):
    """A sentence scores the same alone and batched with a longer one (eval mode)."""
    model, tok = tiny_model(tiny_bert_dir, fusion=fusion, enhanced_semgcn=enhanced, cross_attention_heads=4)
    model.eval()
    sents = toy_sentences()
    short, long_ = sents[2], sents[6]
    alone, _ = batch_of([short], tok, train=False)
    both, _ = batch_of([short, long_], tok, train=False)
    h1 = model.features(alone)[0]
    h2 = model.features(both)[0, : h1.shape[0]]
    assert torch.allclose(h1, h2, atol=1e-5)
    p1 = model.predict(alone, 0.0, 1000)
    p2 = model.predict(both, 0.0, 1000)
    first = p2["spans"][:, 0] == 0
    assert torch.equal(p1["spans"], p2["spans"][first])
    assert torch.allclose(p1["span_scores"], p2["span_scores"][first], atol=1e-5)
    t_first = p2["triplets"][:, 0] == 0
    assert torch.equal(p1["triplets"], p2["triplets"][t_first])


@pytest.mark.parametrize("fusion", ["tin", "cross_attention", "lightweight"])
def test_every_parameter_gets_a_gradient(tiny_bert_dir, fusion):
    model, tok = tiny_model(tiny_bert_dir, fusion=fusion, enhanced_semgcn=True, cross_attention_heads=4,
                            loss_weighting="uncertainty")
    model.train()
    batch, _ = batch_of(toy_sentences(), tok, train=True)
    span_logits, pair_logits = model(batch)
    assert span_logits.shape == (batch["spans"].shape[0], 3) and pair_logits.shape == (batch["pairs"].shape[0], 3)
    loss, _, _ = model.loss(batch, span_logits, pair_logits)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
