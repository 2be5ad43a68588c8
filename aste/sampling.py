"""SpERT-style sampling and collation.

Training: each sentence contributes its gold spans, ``neg_entity_count`` random non-gold candidate
spans (width <= max_span_size; with ``neg_overlap_fraction`` f, up to f of them among the spans that
overlap a gold span), its gold (aspect, opinion) pairs and ``neg_triple_count`` random
gold-aspect x gold-opinion pairs that carry no sentiment (-1 = all of them), plus up to
``neg_overlap_pairs`` negative pairs built on a negative span that overlaps a gold one. The draw is a pure
function of (seed, epoch, sentence index), so it is identical with any number of DataLoader workers
and after a resume.

Evaluation: every candidate span of every sentence; pairs are formed by the model from the spans it
classifies as aspect/opinion (see ``models.d2e2s.D2E2S.predict``).

Spans and pairs are *flat* across the batch (span = (batch row, start, end)), so no padding of
span/pair lists is needed and padding cannot leak into span or pair scores.
"""
from __future__ import annotations

import math
import random
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from models.labels import ASPECT, OPINION

from .encoding import EncodedSentence, encode_sentence, encoder_max_length
from .input_reader import BadExample, ReadReport, Sentence


@lru_cache(maxsize=512)
def candidate_spans(n: int, max_span_size: int) -> np.ndarray:
    """All word spans [s, e) with 1 <= e - s <= max_span_size, ordered by start then width. (N, 2)."""
    starts, widths = np.meshgrid(np.arange(n), np.arange(1, max_span_size + 1), indexing="ij")
    spans = np.stack([starts.ravel(), (starts + widths).ravel()], axis=1)
    return spans[spans[:, 1] <= n]


def _choose(rng: np.random.Generator, count: int, limit: int) -> np.ndarray:
    if limit < 0 or count <= limit:
        return np.arange(count)
    return np.sort(rng.choice(count, size=limit, replace=False))


def _choose_with_overlap(rng: np.random.Generator, near: np.ndarray, count: int, fraction: float) -> np.ndarray:
    """`count` candidates without replacement: int(fraction * count) of them among `near` (those
    overlapping a gold span) and the rest among the others, topping up from either side when the
    other has too few; all of them if there are fewer than `count`."""
    near_idx, far_idx = np.flatnonzero(near), np.flatnonzero(~near)
    # the near share, or more when there are too few far candidates to make up `count`
    k_near = min(len(near_idx), max(int(fraction * count), count - len(far_idx)))
    picked_near = near_idx[_choose(rng, len(near_idx), k_near)]
    picked_far = far_idx[_choose(rng, len(far_idx), count - k_near)]
    return np.sort(np.concatenate([picked_near, picked_far]))


class ASTEDataset(Dataset):
    """Sentences encoded once; ``__getitem__`` returns training samples or evaluation candidates."""

    def __init__(self, sentences: list[Sentence], tokenizer, *, max_span_size: int, train: bool,
                 neg_entity_count: int = 100, neg_triple_count: int = 100, seed: int = 0,
                 max_length: int | None = None, on_bad_example: str = "error", report: ReadReport | None = None,
                 neg_overlap_fraction: float = 0.0, neg_overlap_pairs: int = 0):
        self.report = report if report is not None else ReadReport()
        max_length = max_length or encoder_max_length(tokenizer)
        self.sentences: list[Sentence] = []
        self.encoded: list[EncodedSentence] = []
        self.source_index: list[int] = []  # position of each kept sentence in `sentences`
        self.skipped: list[tuple[int, BadExample]] = []  # (position, why) of each skipped one
        for i, s in enumerate(sentences):
            try:
                enc = encode_sentence(s, tokenizer, max_length, self.report)
            except BadExample as err:
                self.report.add_skip(err, on_bad_example)
                self.skipped.append((i, err))
                continue
            self.sentences.append(s)
            self.encoded.append(enc)
            self.source_index.append(i)
        self.max_span_size, self.train = max_span_size, train
        self.neg_entity_count, self.neg_triple_count = neg_entity_count, neg_triple_count
        self.neg_overlap_fraction, self.neg_overlap_pairs = neg_overlap_fraction, neg_overlap_pairs
        self.seed, self.epoch = seed, 0
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __len__(self) -> int:
        return len(self.encoded)

    def lengths(self) -> list[int]:
        return [len(e.input_ids) for e in self.encoded]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, idx: int) -> dict:
        enc = self.encoded[idx]
        n = enc.num_words
        item = {"index": idx, "enc": enc}
        if not self.train:
            spans = candidate_spans(n, self.max_span_size)
            item["spans"], item["span_labels"] = spans, np.zeros(len(spans), dtype=np.int64)
            return item
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        gold = enc.gold_spans
        cands = candidate_spans(n, self.max_span_size)
        is_gold = np.isin(cands[:, 0] * (n + 1) + cands[:, 1], gold[:, 0] * (n + 1) + gold[:, 1])
        non_gold = cands[~is_gold]
        # overlaps[j, g]: negative candidate j shares a word with gold span g ("top" of "top notch")
        overlaps = (non_gold[:, None, 0] < gold[None, :, 1]) & (gold[None, :, 0] < non_gold[:, None, 1])
        if self.neg_overlap_fraction > 0 and self.neg_entity_count >= 0:
            chosen = _choose_with_overlap(rng, overlaps.any(1), self.neg_entity_count, self.neg_overlap_fraction)
        else:
            chosen = _choose(rng, len(non_gold), self.neg_entity_count)
        negs, overlaps = non_gold[chosen], overlaps[chosen]
        item["spans"] = np.concatenate([gold[:, :2], negs]).astype(np.int64)
        item["span_labels"] = np.concatenate([gold[:, 2], np.zeros(len(negs), dtype=np.int64)])

        # pairs index into item["spans"]; gold spans come first, so gold span k is row k
        key = {(int(s), int(e)): k for k, (s, e, _) in enumerate(gold)}
        labels: dict[tuple[int, int], np.ndarray] = {}
        for a0, a1, o0, o1, senti in enc.gold_triplets:
            pair = (key[(int(a0), int(a1))], key[(int(o0), int(o1))])
            labels.setdefault(pair, np.zeros(3, dtype=np.float32))[senti] = 1.0
        aspects = [k for k, row in enumerate(gold) if row[2] == ASPECT]
        opinions = [k for k, row in enumerate(gold) if row[2] == OPINION]
        neg_pairs = [(a, o) for a in aspects for o in opinions if (a, o) not in labels]
        neg_pairs = [neg_pairs[i] for i in _choose(rng, len(neg_pairs), self.neg_triple_count)]
        if self.neg_overlap_pairs:
            # pairs built on a wrong span: a gold aspect with a negative span overlapping one of its
            # opinions, and a negative span overlapping an aspect with one of that aspect's opinions
            near = []
            for j, g in zip(*np.nonzero(overlaps)):
                row = len(gold) + int(j)
                if gold[g, 2] == OPINION:
                    near += [(a, row) for (a, o) in labels if o == g]
                else:
                    near += [(row, o) for (a, o) in labels if a == g]
            near = list(dict.fromkeys(near))
            neg_pairs += [near[i] for i in _choose(rng, len(near), self.neg_overlap_pairs)]
        pairs = list(labels) + neg_pairs
        item["pairs"] = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        item["pair_labels"] = np.stack(list(labels.values()) + [np.zeros(3, np.float32)] * len(neg_pairs)) \
            if pairs else np.zeros((0, 3), np.float32)
        return item


def collate(items: list[dict], pad_id: int = 0) -> dict:
    """Pad subwords/words per batch; concatenate spans and pairs with a batch-row column."""
    B = len(items)
    S = max(len(it["enc"].input_ids) for it in items)
    W = max(it["enc"].num_words for it in items)
    input_ids = np.full((B, S), pad_id, dtype=np.int64)
    attention_mask = np.zeros((B, S), dtype=np.int64)
    subword_word = np.full((B, S), -1, dtype=np.int64)  # word index of each subword, -1 = special/pad
    word_mask = np.zeros((B, W), dtype=bool)
    dep_adj = np.zeros((B, W, W), dtype=np.float32)
    spans, span_labels, pairs, pair_labels = [], [], [], []
    span_offset = 0
    for b, it in enumerate(items):
        enc: EncodedSentence = it["enc"]
        s_len, n = len(enc.input_ids), enc.num_words
        input_ids[b, :s_len] = enc.input_ids
        attention_mask[b, :s_len] = 1
        lengths = enc.word_spans[:, 1] - enc.word_spans[:, 0]
        positions = np.repeat(enc.word_spans[:, 0], lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        subword_word[b, positions] = np.repeat(np.arange(n), lengths)
        word_mask[b, :n] = True
        dep_adj[b, :n, :n] = enc.dep_adj
        sp = it["spans"]
        spans.append(np.concatenate([np.full((len(sp), 1), b), sp], axis=1))
        span_labels.append(it["span_labels"])
        if "pairs" in it:
            pairs.append(it["pairs"] + span_offset)
            pair_labels.append(it["pair_labels"])
        span_offset += len(sp)
    batch = {
        "index": torch.tensor([it["index"] for it in items]),
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "subword_word": torch.from_numpy(subword_word),
        "word_mask": torch.from_numpy(word_mask),
        "dep_adj": torch.from_numpy(dep_adj),
        "spans": torch.from_numpy(np.concatenate(spans).astype(np.int64)),
        "span_labels": torch.from_numpy(np.concatenate(span_labels)),
    }
    if pairs:
        batch["pairs"] = torch.from_numpy(np.concatenate(pairs).astype(np.int64))
        batch["pair_labels"] = torch.from_numpy(np.concatenate(pair_labels).astype(np.float32))
    return batch


class LengthBucketSampler(Sampler):
    """Batches of similar length. Training: shuffled pools of 50 batches sorted inside, batch order
    shuffled; evaluation (shuffle=False): sorted by length, which only changes speed, not results."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0, pool_batches: int = 50):
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.epoch, self.pool = seed, 0, pool_batches * batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self) -> random.Random:
        # one stream per (seed, epoch); the prime keeps (seed, epoch) and (seed + 1, epoch - k) apart
        return random.Random(self.seed * 1_000_003 + self.epoch)

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        if not self.shuffle:
            order.sort(key=lambda i: self.lengths[i])
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng = self._rng()
        rng.shuffle(order)
        batches = []
        for p in range(0, len(order), self.pool):
            pool = sorted(order[p:p + self.pool], key=lambda i: self.lengths[i])
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


class ShuffledBatchSampler(LengthBucketSampler):
    """Plain shuffled batches (no length grouping), reproducible per (seed, epoch)."""

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        self._rng().shuffle(order)
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]


class ShardedBatches:
    """torchrun: each rank takes every world-th sentence of each global batch. A global batch with
    fewer sentences than ranks is given whole to every rank (losses are normalised by global counts,
    so the averaged gradient is unchanged); no sentence is dropped."""

    def __init__(self, batches, rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self):
        for batch in self.batches:
            yield batch[self.rank::self.world] if len(batch) >= self.world else batch

    def __len__(self) -> int:
        return len(self.batches)
