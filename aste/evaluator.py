"""Exact-match micro P/R/F1 on word spans.

  aspect   (sentence, start, end)                 from the span classifier
  opinion  (sentence, start, end)                 from the span classifier
  entity   (sentence, start, end, type)           aspects and opinions together
  pair     (sentence, aspect span, opinion span)  from predicted triplets, sentiment ignored
  triplet  (sentence, aspect span, opinion span, sentiment)
and triplet P/R/F1 per sentiment with gold support. Gold items are sets: a triplet listed twice in a
file counts once (the reader counts such duplicates). Every sentence of the split is scored; a
sentence with no prediction contributes its gold items to recall.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from models.labels import ASPECT, OPINION, ENTITY_TYPES, SENTIMENTS

KINDS = ("aspect", "opinion", "entity", "pair", "triplet")
# --sen_filter_threshold values each epoch is also scored under (metrics_at), below and above the run's own:
# a later study picks its epochs again under any of them (summarize.py --decoding)
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def prf(n_pred: int, n_gold: int, n_correct: int) -> dict:
    p = 100.0 * n_correct / n_pred if n_pred else 0.0
    r = 100.0 * n_correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f1": f, "n_pred": n_pred, "n_gold": n_gold, "n_correct": n_correct}


def items_from_triplets(sid: int, triplets) -> dict[str, set]:
    """triplets: iterable of (a0, a1, o0, o1, sentiment_id)."""
    out = {k: set() for k in KINDS}
    for a0, a1, o0, o1, s in triplets:
        out["aspect"].add((sid, a0, a1))
        out["opinion"].add((sid, o0, o1))
        out["pair"].add((sid, a0, a1, o0, o1))
        out["triplet"].add((sid, a0, a1, o0, o1, s))
    out["entity"] = {(*x, ASPECT) for x in out["aspect"]} | {(*x, OPINION) for x in out["opinion"]}
    return out


def score(gold: dict[str, set], pred: dict[str, set]) -> dict:
    metrics = {k: prf(len(pred[k]), len(gold[k]), len(pred[k] & gold[k])) for k in KINDS}
    per = {}
    for sid, name in enumerate(SENTIMENTS):
        g = {t for t in gold["triplet"] if t[5] == sid}
        p = {t for t in pred["triplet"] if t[5] == sid}
        per[name] = prf(len(p), len(g), len(p & g))
    metrics["triplet_by_sentiment"] = per
    return metrics


class Evaluator:
    """Collects batched predictions for one dataset split and scores them against its gold. With a
    `threshold`, the predictions may be decoded at a lower --sen_filter_threshold: metrics() and
    prediction_records() keep only the triplets scoring above `threshold`, metrics_at() scores others."""

    def __init__(self, dataset, threshold: float | None = None):
        self.dataset, self.threshold = dataset, threshold
        self.gold = {k: set() for k in KINDS}
        for sid, enc in enumerate(dataset.encoded):
            for k, v in items_from_triplets(sid, map(tuple, enc.gold_triplets.tolist())).items():
                self.gold[k] |= v
        self.pred = {k: set() for k in KINDS}
        self.per_sentence: dict[int, dict] = defaultdict(lambda: {"triplets": [], "spans": []})
        self.capped_sentences = 0

    def add(self, batch_index: torch.Tensor, out: dict) -> None:
        sids = batch_index.tolist()
        for row, s, e, t, sc in zip(*(out["spans"].T.tolist()), out["span_types"].tolist(), out["span_scores"].tolist()):
            sid = sids[row]
            kind = "aspect" if t == ASPECT else "opinion"
            self.pred[kind].add((sid, s, e))
            self.pred["entity"].add((sid, s, e, t))
            self.per_sentence[sid]["spans"].append((s, e, ENTITY_TYPES[t], sc))
        for (row, a0, a1, o0, o1, senti), sc in zip(out["triplets"].tolist(), out["triplet_scores"].tolist()):
            sid = sids[row]
            self.pred["pair"].add((sid, a0, a1, o0, o1))
            self.pred["triplet"].add((sid, a0, a1, o0, o1, senti))
            self.per_sentence[sid]["triplets"].append((a0, a1, o0, o1, senti, sc))
        self.capped_sentences += out["capped_sentences"]

    def metrics(self) -> dict:
        if self.threshold is None:
            return score(self.gold, self.pred)
        return score(self.gold, self.pred | self._triplets_above(self.threshold))

    def metrics_at(self, threshold: float) -> dict:
        """Pair and triplet scores as if decoded with --sen_filter_threshold `threshold` (at or above the
        one decoded with): exactly the triplets scoring above it. An overlap filter drops a triplet only
        for a better-scoring one, which stays above too, so no other triplet changes."""
        m = score(self.gold, self.pred | self._triplets_above(threshold))
        return {k: m[k] for k in ("pair", "triplet", "triplet_by_sentiment")}

    def _triplets_above(self, threshold: float) -> dict[str, set]:
        cut = _float32(threshold)  # predict() compares in float32
        kept = {(sid, *t[:5]) for sid, d in self.per_sentence.items() for t in d["triplets"] if t[5] > cut}
        return {"triplet": kept, "pair": {t[:5] for t in kept}}

    def prediction_records(self) -> list[dict]:
        """One JSON-ready record per sentence: tokens, gold and predicted triplets as text and indices."""
        records = []
        cut = -1.0 if self.threshold is None else _float32(self.threshold)
        for sid, (sentence, enc) in enumerate(zip(self.dataset.sentences, self.dataset.encoded)):
            toks = sentence.tokens
            pred = sorted((t for t in self.per_sentence[sid]["triplets"] if t[5] > cut), key=lambda t: -t[5]) \
                if sid in self.per_sentence else []
            records.append({
                "sentence": sid, "where": sentence.where, "tokens": toks,
                "gold": [triplet_record(toks, *t) for t in enc.gold_triplets.tolist()],
                "predicted": [triplet_record(toks, *t[:5], score=t[5]) for t in pred],
            })
        return records


def _float32(x: float) -> float:
    return torch.tensor(x, dtype=torch.float32).item()


def triplet_record(tokens: list[str], a0: int, a1: int, o0: int, o1: int, senti: int, score: float | None = None) -> dict:
    rec = {"aspect": " ".join(tokens[a0:a1]), "opinion": " ".join(tokens[o0:o1]), "sentiment": SENTIMENTS[senti],
           "aspect_span": [a0, a1], "opinion_span": [o0, o1]}
    if score is not None:
        rec["score"] = round(float(score), 4)
    return rec


def format_metrics(m: dict) -> str:
    return " ".join(f"{k} {m[k]['f1']:.2f}" for k in KINDS)


def sentiment_table(m: dict) -> str:
    lines = ["| sentiment | P | R | F1 | support |", "|---|---|---|---|---|"]
    for name, v in m["triplet_by_sentiment"].items():
        lines.append(f"| {name} | {v['p']:.2f} | {v['r']:.2f} | {v['f1']:.2f} | {v['n_gold']} |")
    t = m["triplet"]
    lines.append(f"| all | {t['p']:.2f} | {t['r']:.2f} | {t['f1']:.2f} | {t['n_gold']} |")
    return "\n".join(lines)
