"""Prediction throughput of a saved run on CPU (or GPU): sentences per second over a test set.

    python scripts/benchmark_predict.py --checkpoint Results/14res/<run>

Sentences come with their words (the test file's tokens) and dependency parses (cached spaCy parses),
so the figure is the model's: batching, encoding, the network and decoding. Model loading is timed
separately. Writes Results/benchmarks/predict.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aste.input_reader import Sentence, read_sentences  # noqa: E402
from aste.parsing import add_parses  # noqa: E402
from aste.predictor import Predictor  # noqa: E402
from scripts.bench_utils import write_report  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="Results/benchmarks/predict.md")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    test = read_sentences(os.path.join("data", "d2e2s", args.dataset, "test_dep_triple_polarity_result.json"))
    sentences = [Sentence(s.tokens, [], s.heads, s.where) for s in test]  # no gold: plain inputs
    add_parses(sentences, cache_dir=os.path.join("data", ".parse_cache"))
    t0 = time.perf_counter()
    predictor = Predictor.from_run(args.checkpoint, device)
    load_s = time.perf_counter() - t0
    rows = []
    for bs in args.batch_sizes:
        predictor.predict(sentences[:64], bs)  # warm-up
        t0 = time.perf_counter()
        out = predictor.predict(sentences, bs)
        sec = time.perf_counter() - t0
        rows.append((bs, sec, len(sentences) / sec, sum(len(r["triplets"]) for r in out)))
        print(rows[-1], flush=True)
    lines = ["# Prediction throughput", "",
             f"Written by `scripts/benchmark_predict.py` on {time.strftime('%Y-%m-%d')}: run `{args.checkpoint}`, "
             f"{len(sentences)} {args.dataset} test sentences, device {device}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads. Model load: {load_s:.1f} s.", "",
             "| batch size | seconds | sentences / s | triplets predicted |", "|---|---|---|---|"]
    lines += [f"| {bs} | {sec:.2f} | {rate:.1f} | {n} |" for bs, sec, rate, n in rows]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
