"""Sentence -> model-ready arrays, computed once per sentence and cached by the dataset.

Subwords come from the encoder's own tokenizer run on the pre-split words
(``is_split_into_words=True``), so word i maps to the subword range ``word_spans[i]``.
A word the tokenizer turns into no subword at all (an empty string, a lone zero-width or control
character: 14res train #748 has one) is encoded as the tokenizer's unknown token instead. That
keeps every word index valid; the repair is counted. (The original D2E2S code let such a word give
an empty span mask, whose max-pool of -1e30 produced losses near 1e25.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.labels import ASPECT, OPINION, SENTIMENTS

from .input_reader import BadExample, ReadReport, Sentence


@dataclass
class EncodedSentence:
    input_ids: np.ndarray  # (S,) int64, with the encoder's special tokens
    word_spans: np.ndarray  # (n, 2) int64: subword [start, end) of each word
    dep_adj: np.ndarray  # (n, n) float32: undirected dependency edges + self loops (self loops only if unparsed)
    gold_spans: np.ndarray  # (G, 3) int64: start, end (exclusive), entity type id
    gold_triplets: np.ndarray  # (T, 5) int64: aspect start, end, opinion start, end, sentiment id

    @property
    def num_words(self) -> int:
        return len(self.word_spans)


def encoder_max_length(tokenizer, model_config=None) -> int:
    limits = [getattr(tokenizer, "model_max_length", None), getattr(model_config, "max_position_embeddings", None)]
    # transformers sets model_max_length to a huge sentinel (about 1e30) when a tokenizer names no limit
    limits = [x for x in limits if isinstance(x, int) and 0 < x < 100_000]
    return min(limits) if limits else 512


def subword_ids(tokenizer, words: list[str], where: str, max_length: int, report: ReadReport | None):
    """Token ids and per-word subword ranges; words with no subword become the unknown token."""
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=True, truncation=False)
    word_ids = enc.word_ids()
    covered = {w for w in word_ids if w is not None}
    if len(covered) < len(words):
        unk = tokenizer.unk_token or "[UNK]"
        words = [w if i in covered else unk for i, w in enumerate(words)]
        if report is not None:
            report.notes["word_without_subwords_replaced_by_unk"] += len(words) - len(covered)
        enc = tokenizer(words, is_split_into_words=True, add_special_tokens=True, truncation=False)
        word_ids = enc.word_ids()
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    if len(ids) > max_length:
        raise BadExample(where, f"sentence of {len(words)} words is {len(ids)} subwords long, over the encoder's "
                         f"limit of {max_length}; it is not truncated (use --on_bad_example skip to drop it)",
                         "overlong")
    spans = np.full((len(words), 2), -1, dtype=np.int64)
    for pos, w in enumerate(word_ids):  # once per sentence at load time, not per step
        if w is None:
            continue
        if spans[w, 0] < 0:
            spans[w, 0] = pos
        spans[w, 1] = pos + 1
    assert (spans >= 0).all(), f"{where}: a word has no subword after repair"
    return ids, spans


def dependency_adjacency(heads: list[int] | None, n: int) -> np.ndarray:
    """Undirected word-level dependency graph with self loops on real words (n x n)."""
    adj = np.eye(n, dtype=np.float32)
    if heads is not None:
        child = np.arange(n)
        head = np.asarray(heads, dtype=np.int64) - 1
        keep = head >= 0  # the root has head 0 -> -1
        adj[child[keep], head[keep]] = 1.0
        adj[head[keep], child[keep]] = 1.0
    return adj


def gold_arrays(sentence: Sentence, report: ReadReport | None):
    """Gold spans (each span once, with its type) and gold triplets (duplicates removed, counted)."""
    span_type: dict[tuple[int, int], int] = {}
    for t in sentence.triplets:
        span_type.setdefault(t.aspect, ASPECT)
        if span_type.setdefault(t.opinion, OPINION) != OPINION and report is not None:
            report.notes["span_both_aspect_and_opinion_kept_as_aspect"] += 1
    spans = np.array([(s, e, k) for (s, e), k in span_type.items()], dtype=np.int64).reshape(-1, 3)
    unique = list(dict.fromkeys(t.as_tuple() for t in sentence.triplets))
    if report is not None and len(unique) < len(sentence.triplets):
        report.notes["duplicate_gold_triplets_counted_once"] += len(sentence.triplets) - len(unique)
    trips = np.array([(*t[:4], SENTIMENTS.index(t[4])) for t in unique], dtype=np.int64).reshape(-1, 5)
    return spans, trips


def encode_sentence(sentence: Sentence, tokenizer, max_length: int, report: ReadReport | None = None) -> EncodedSentence:
    if not sentence.tokens:  # the file readers reject these too; this also covers Predictor's inputs
        raise BadExample(sentence.where, "empty sentence (no words)", "empty_sentence")
    ids, spans = subword_ids(tokenizer, sentence.tokens, sentence.where, max_length, report)
    gold_spans, gold_trips = gold_arrays(sentence, report)
    return EncodedSentence(ids, spans, dependency_adjacency(sentence.heads, len(sentence.tokens)), gold_spans, gold_trips)
