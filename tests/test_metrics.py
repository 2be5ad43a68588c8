"""Metrics on hand-computed cases."""
import pytest

from aste.evaluator import items_from_triplets, prf, score

POS, NEG, NEU = 0, 1, 2


def sets(per_sentence):
    out = {k: set() for k in ("aspect", "opinion", "entity", "pair", "triplet")}
    for sid, trips in per_sentence.items():
        for k, v in items_from_triplets(sid, trips).items():
            out[k] |= v
    return out


def test_prf_basic_and_empty():
    assert prf(4, 5, 2) == pytest.approx({"p": 50.0, "r": 40.0, "f1": 100 * 0.2 / 0.45, "n_pred": 4, "n_gold": 5, "n_correct": 2})
    assert prf(0, 3, 0)["f1"] == 0.0  # empty prediction
    assert prf(3, 0, 0)["f1"] == 0.0  # empty gold
    assert prf(0, 0, 0)["f1"] == 0.0


def test_exact_match_partial_overlap_and_wrong_sentiment():
    gold = sets({0: [(1, 2, 3, 4, POS), (6, 8, 9, 10, NEG)], 1: [(0, 1, 2, 3, NEU)]})
    pred = sets({0: [(1, 2, 3, 4, POS),        # exact: correct
                     (6, 7, 9, 10, NEG)],      # aspect overlaps gold (6, 8) only partly: wrong everywhere
                 1: [(0, 1, 2, 3, POS)]})      # right pair, wrong sentiment
    m = score(gold, pred)
    assert m["triplet"]["n_correct"] == 1 and m["triplet"]["n_pred"] == 3 and m["triplet"]["n_gold"] == 3
    assert m["triplet"]["f1"] == pytest.approx(100 / 3)
    assert m["pair"]["n_correct"] == 2 and m["pair"]["f1"] == pytest.approx(200 / 3)
    assert m["aspect"]["n_correct"] == 2 and m["aspect"]["n_gold"] == 3
    assert m["opinion"]["n_correct"] == 3 and m["opinion"]["f1"] == pytest.approx(100.0)
    by = m["triplet_by_sentiment"]
    assert by["POS"]["n_gold"] == 1 and by["POS"]["n_pred"] == 2 and by["POS"]["n_correct"] == 1
    assert by["NEU"]["n_gold"] == 1 and by["NEU"]["n_correct"] == 0 and by["NEU"]["f1"] == 0.0


def test_same_span_in_two_sentences_is_two_items():
    gold = sets({0: [(0, 1, 2, 3, POS)], 1: [(0, 1, 2, 3, POS)]})
    pred = sets({0: [(0, 1, 2, 3, POS)]})
    m = score(gold, pred)
    assert m["triplet"]["p"] == 100.0 and m["triplet"]["r"] == 50.0


def test_duplicates_count_once():
    gold = sets({0: [(0, 1, 2, 3, POS), (0, 1, 2, 3, POS)]})
    pred = sets({0: [(0, 1, 2, 3, POS), (0, 1, 2, 3, POS)]})
    m = score(gold, pred)
    assert m["triplet"]["n_gold"] == 1 and m["triplet"]["n_pred"] == 1 and m["triplet"]["f1"] == 100.0


def test_entity_keeps_type():
    # one aspect and one opinion that share a span are two entities
    gold = sets({0: [(0, 1, 0, 1, POS)]})
    assert len(gold["entity"]) == 2


def test_empty_gold_and_empty_prediction():
    m = score(sets({}), sets({0: [(0, 1, 2, 3, POS)]}))
    assert m["triplet"]["p"] == 0.0 and m["triplet"]["r"] == 0.0 and m["triplet"]["n_gold"] == 0
    m = score(sets({0: [(0, 1, 2, 3, POS)]}), sets({}))
    assert m["triplet"]["r"] == 0.0 and m["triplet"]["n_pred"] == 0
