"""Sampling honours its flags, is reproducible, and evaluation sees every sentence and candidate."""
import numpy as np
import pytest

from aste.sampling import ASTEDataset, LengthBucketSampler, ShuffledBatchSampler, candidate_spans, collate
from conftest import minilm_dir, toy_sentences
from models.encoder import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(minilm_dir())


def test_candidate_spans_counts():
    spans = candidate_spans(10, 8)
    assert len(spans) == sum(min(8, 10 - s) for s in range(10))
    assert (spans[:, 1] - spans[:, 0]).max() == 8 and spans[:, 1].max() == 10
    assert len(candidate_spans(3, 8)) == 6


@pytest.mark.parametrize("neg", [0, 3, 10, -1])
def test_neg_entity_and_triple_counts_are_honoured(tok, neg):
    sents = toy_sentences()
    ds = ASTEDataset(sents, tok, max_span_size=4, train=True, neg_entity_count=neg, neg_triple_count=neg)
    ds.set_epoch(1)
    for i, s in enumerate(sents):
        item = ds[i]
        n_gold = len(ds.encoded[i].gold_spans)
        n_cand = len(candidate_spans(len(s.tokens), 4))
        expected = n_cand - n_gold if neg == -1 else min(neg, n_cand - n_gold)
        assert len(item["spans"]) == n_gold + expected
        assert (item["span_labels"][:n_gold] > 0).all() and (item["span_labels"][n_gold:] == 0).all()
        n_pos_pairs = len({(t.aspect, t.opinion) for t in s.triplets})
        all_neg_pairs = len({t.aspect for t in s.triplets}) * len({t.opinion for t in s.triplets}) - n_pos_pairs
        expected_pairs = all_neg_pairs if neg == -1 else min(neg, all_neg_pairs)
        assert len(item["pairs"]) == n_pos_pairs + expected_pairs
        assert item["pair_labels"][:n_pos_pairs].sum(1).min() >= 1 and item["pair_labels"][n_pos_pairs:].sum() == 0


def test_sampling_is_a_function_of_seed_epoch_index(tok):
    sents = toy_sentences()
    a = ASTEDataset(sents, tok, max_span_size=4, train=True, neg_entity_count=5, seed=3)
    b = ASTEDataset(sents, tok, max_span_size=4, train=True, neg_entity_count=5, seed=3)
    a.set_epoch(2), b.set_epoch(2)
    assert np.array_equal(a[0]["spans"], b[0]["spans"])
    b.set_epoch(3)
    assert any(not np.array_equal(a[i]["spans"], b[i]["spans"]) for i in range(len(sents)))


def test_eval_items_hold_every_candidate_and_batches_cover_every_sentence(tok):
    sents = toy_sentences() * 3  # 24 sentences, batch 5: the last batch is partial and must be kept
    ds = ASTEDataset(sents, tok, max_span_size=8, train=False)
    sampler = LengthBucketSampler(ds.lengths(), 5, shuffle=False)
    seen = [i for batch in sampler for i in batch]
    assert sorted(seen) == list(range(24)) and len(sampler) == 5
    lengths = [ds.lengths()[i] for i in seen]
    assert lengths == sorted(lengths)
    batch = collate([ds[i] for i in range(24)], ds.pad_id)
    assert batch["spans"].shape[0] == sum(len(candidate_spans(len(s.tokens), 8)) for s in sents)


@pytest.mark.parametrize("cls", [LengthBucketSampler, ShuffledBatchSampler])
def test_train_samplers_cover_every_sentence_once_per_epoch(cls):
    lengths = list(np.random.default_rng(0).integers(5, 60, size=103))
    s = cls(lengths, 16, shuffle=True, seed=1)
    s.set_epoch(4)
    first = [i for b in s for i in b]
    assert sorted(first) == list(range(103))
    assert first == [i for b in s for i in b]  # same epoch, same order
    s.set_epoch(5)
    assert first != [i for b in s for i in b]


def test_collate_alignment(tok):
    sents = toy_sentences()[:3]
    ds = ASTEDataset(sents, tok, max_span_size=4, train=False)
    batch = collate([ds[i] for i in range(3)], ds.pad_id)
    for b, s in enumerate(sents):
        words = batch["subword_word"][b]
        assert words[words >= 0].unique().tolist() == list(range(len(s.tokens)))
        assert batch["word_mask"][b].sum() == len(s.tokens)
        assert batch["dep_adj"][b, len(s.tokens):].sum() == 0  # padding rows are empty


def test_hard_negatives_overlap_gold_spans_and_build_negative_pairs(tok):
    """--neg_overlap_fraction 1: every sampled negative span overlaps a gold span (while there are
    enough such candidates); --neg_overlap_pairs: extra all-zero pairs, each pairing a gold span's
    gold partner with a negative span that overlaps it."""
    sents = toy_sentences()
    ds = ASTEDataset(sents, tok, max_span_size=4, train=True, neg_entity_count=3, neg_triple_count=0,
                     neg_overlap_fraction=1.0, neg_overlap_pairs=4)
    plain = ASTEDataset(sents, tok, max_span_size=4, train=True, neg_entity_count=3, neg_triple_count=0)
    ds.set_epoch(1)
    plain.set_epoch(1)
    some_differ = False
    for i in range(len(sents)):
        item, ref = ds[i], plain[i]
        gold = ds.encoded[i].gold_spans
        G = len(gold)
        negs = item["spans"][G:]
        assert len(negs) == 3 and (item["span_labels"][G:] == 0).all()
        assert all(((s < gold[:, 1]) & (gold[:, 0] < e)).any() for s, e in negs)
        some_differ |= not np.array_equal(negs, ref["spans"][G:])
        n_pos = len({(t.aspect, t.opinion) for t in sents[i].triplets})
        extra = item["pairs"][n_pos:]
        assert 1 <= len(extra) <= 4 and item["pair_labels"][n_pos:].sum() == 0
        for a, o in extra:
            assert (a >= G) != (o >= G)  # exactly one side is a negative span
            neg, partner = (a, o) if a >= G else (o, a)
            s, e = item["spans"][neg]
            assert (partner < G) and any(((s < gs_e) & (gs_s < e)) for gs_s, gs_e, _ in gold)
    assert some_differ


def test_hard_negative_draw_tops_up_when_one_side_runs_short():
    from aste.sampling import _choose_with_overlap
    rng = np.random.default_rng(0)
    near = np.array([True] * 15 + [False] * 3)
    picked = _choose_with_overlap(rng, near, 10, 0.5)
    assert len(picked) == 10 and len(set(picked.tolist())) == 10 and (~near[picked]).sum() == 3
    picked = _choose_with_overlap(rng, ~near, 10, 1.0)  # 3 near, 15 far: the far side makes up the rest
    assert len(picked) == 10 and near[picked].sum() == 7
    assert len(_choose_with_overlap(rng, near[:5], 10, 0.5)) == 5  # fewer candidates than asked: all of them
