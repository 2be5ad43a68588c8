"""The fast span/pair pooling against the naive formulation it replaces (kept here only): the
original code built a (batch x spans x tokens x hidden) tensor, masked it with -1e30 and took the max."""
import torch

from models.span_ops import RangeMax, between_max_pool


def span_max_pool(h, spans):
    return RangeMax(h).query(spans[:, 0], spans[:, 1], spans[:, 2])
from aste.sampling import candidate_spans


def naive_span_pool(h, spans):
    B, W, D = h.shape
    mask = torch.zeros(spans.shape[0], W, dtype=torch.bool)
    for k, (b, s, e) in enumerate(spans.tolist()):
        mask[k, s:e] = True
    big = h[spans[:, 0]].unsqueeze(0).squeeze(0)  # (N, W, D): the copy the fast path avoids
    return (big + (~mask).unsqueeze(-1).float() * -1e30).max(dim=1).values


def naive_between(h, batch, first, second):
    out = []
    for b, (s1, e1), (s2, e2) in zip(batch.tolist(), first.tolist(), second.tolist()):
        lo, hi = (e1, s2) if e1 <= s2 else (e2, s1)
        out.append(h[b, lo:hi].max(0).values if hi > lo else torch.zeros(h.shape[-1]))
    return torch.stack(out)


def random_batch(seed=0, B=4, W=23, D=7):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, W, D, generator=g)
    lengths = [W, 1, 9, 16][:B]
    spans = torch.cat([torch.cat([torch.full((len(c), 1), b), torch.from_numpy(c)], 1)
                       for b, n in enumerate(lengths) for c in [candidate_spans(n, 8)]])
    h_padded = h.clone()
    for b, n in enumerate(lengths):
        h_padded[b, n:] = 1e6  # garbage at padding must never be read
    return h_padded, spans, lengths


def test_span_pool_matches_naive_with_padding():
    h, spans, _ = random_batch()
    assert torch.allclose(span_max_pool(h, spans), naive_span_pool(h, spans))


def test_range_max_all_ranges_any_length():
    h = torch.randn(2, 37, 5)
    t = RangeMax(h)
    b, s, e = zip(*[(b, i, j) for b in range(2) for i in range(37) for j in range(i + 1, 38)])
    got = t.query(torch.tensor(b), torch.tensor(s), torch.tensor(e))
    ref = torch.stack([h[bb, i:j].max(0).values for bb, i, j in zip(b, s, e)])
    assert torch.equal(got, ref)


def test_between_matches_naive_including_touching_and_overlapping():
    h, spans, lengths = random_batch(1)
    g = torch.Generator().manual_seed(3)
    rows = []
    for b, n in enumerate(lengths):
        cands = candidate_spans(n, 8)
        for _ in range(30):
            i, j = torch.randint(len(cands), (2,), generator=g).tolist()
            rows.append((b, *cands[i], *cands[j]))
    rows = torch.tensor(rows)
    got = between_max_pool(RangeMax(h), rows[:, 0], rows[:, 1:3], rows[:, 3:5])
    assert torch.allclose(got, naive_between(h, rows[:, 0], rows[:, 1:3], rows[:, 3:5]))


def test_gradient_matches_naive():
    h, spans, _ = random_batch(2)
    h1 = h.clone().requires_grad_()
    h2 = h.clone().requires_grad_()
    w = torch.randn(spans.shape[0], h.shape[-1])
    (span_max_pool(h1, spans) * w).sum().backward()
    (naive_span_pool(h2, spans) * w).sum().backward()
    assert torch.allclose(h1.grad, h2.grad)


def test_gradient_of_every_range_and_between_matches_naive():
    """The table routes each query's gradient straight to the argmax words: same gradient as
    differentiating the naive per-range max, for every range and for the between-span contexts."""
    g = torch.Generator().manual_seed(5)
    h = torch.randn(2, 19, 6, generator=g, dtype=torch.float64)
    b, s, e = map(torch.tensor, zip(*[(b, i, j) for b in range(2) for i in range(19) for j in range(i + 1, 20)]))
    w = torch.randn(b.shape[0], 6, generator=g, dtype=torch.float64)
    h1, h2 = h.clone().requires_grad_(), h.clone().requires_grad_()
    (RangeMax(h1).query(b, s, e) * w).sum().backward()
    (torch.stack([h2[bb, i:j].max(0).values for bb, i, j in zip(b.tolist(), s.tolist(), e.tolist())]) * w).sum().backward()
    assert torch.allclose(h1.grad, h2.grad)

    hp, spans, lengths = random_batch(6)
    hp = hp.double()
    pairs = torch.tensor([(k, m) for k in range(spans.shape[0]) for m in range(spans.shape[0])
                          if spans[k, 0] == spans[m, 0] and (k + m) % 7 == 0])
    first, second = spans[pairs[:, 0], 1:], spans[pairs[:, 1], 1:]
    w = torch.randn(pairs.shape[0], hp.shape[-1], generator=g, dtype=torch.float64)
    h1, h2 = hp.clone().requires_grad_(), hp.clone().requires_grad_()
    (between_max_pool(RangeMax(h1), spans[pairs[:, 0], 0], first, second) * w).sum().backward()
    (naive_between(h2, spans[pairs[:, 0], 0], first, second) * w).sum().backward()
    assert torch.allclose(h1.grad, h2.grad)
    assert h1.grad[0, lengths[0]:].abs().sum() == 0 and h1.grad[1, lengths[1]:].abs().sum() == 0  # never padding


def test_no_argmax_table_without_gradients():
    h = torch.randn(2, 9, 4, requires_grad=True)
    with torch.no_grad():
        t = RangeMax(h)
    assert t.sources is None
    assert torch.equal(t.query(torch.tensor([1]), torch.tensor([2]), torch.tensor([7]))[0], h[1, 2:7].max(0).values.detach())


def test_overlap_losers_by_hand():
    from models.decoding import overlap_losers, triplet_overlap_losers
    # group 0: [2,4) 0.9 beats [3,5) 0.8 and [2,3) 0.5; [6,7) 0.1 overlaps nothing; group 1 is separate
    group = torch.tensor([0, 0, 0, 0, 1])
    start, end = torch.tensor([2, 3, 2, 6, 3]), torch.tensor([4, 5, 3, 7, 5])
    score = torch.tensor([0.9, 0.8, 0.5, 0.1, 0.2])
    assert overlap_losers(group, start, end, score).tolist() == [False, True, True, False, False]
    # a tie goes to the earlier item; chunked comparison gives the same answer
    assert overlap_losers(torch.zeros(2, dtype=torch.long), torch.tensor([0, 0]), torch.tensor([2, 1]),
                          torch.tensor([0.5, 0.5])).tolist() == [False, True]
    import models.decoding as decoding
    old, decoding.CHUNK = decoding.CHUNK, 2
    try:
        assert overlap_losers(group, start, end, score).tolist() == [False, True, True, False, False]
    finally:
        decoding.CHUNK = old
    # "bread / top notch" 0.9, "bread / top" 0.6, "bread / notch" 0.7, "service / top" 0.8 (another aspect)
    spans = torch.tensor([[0, 1, 2], [0, 4, 6], [0, 4, 5], [0, 5, 6], [0, 8, 9]])  # bread, top notch, top, notch, service
    pairs = torch.tensor([[0, 1], [0, 2], [0, 3], [4, 2]])
    lose = triplet_overlap_losers(spans, pairs, torch.tensor([0.9, 0.6, 0.7, 0.8]))
    assert lose.tolist() == [False, True, True, False]


def test_triplet_overlap_losers_above_a_threshold_do_not_depend_on_the_triplets_below_it():
    """Why a higher --sen_filter_threshold can be scored from the triplets kept at a lower one
    (Evaluator.metrics_at): filtering first and last gives the same survivors."""
    from models.decoding import triplet_overlap_losers
    g = torch.Generator().manual_seed(0)
    start = torch.randint(0, 12, (40,), generator=g)
    spans = torch.stack([torch.randint(0, 2, (40,), generator=g), start,
                         start + torch.randint(1, 4, (40,), generator=g)], 1)
    pairs = torch.randint(0, 40, (300, 2), generator=g)
    score = torch.rand(300, generator=g)
    score[:20] = score[20:40]  # ties
    for t in (0.3, 0.5, 0.8):
        above = score > t
        first = ~triplet_overlap_losers(spans, pairs[above], score[above])
        last = (~triplet_overlap_losers(spans, pairs, score))[above]
        assert torch.equal(first, last) and 0 < int(first.sum()) < int(above.sum())
