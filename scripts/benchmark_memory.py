"""Peak memory of a training run as the number of span candidates grows.

    python scripts/benchmark_memory.py

Runs train.py (one epoch: training, then dev and test evaluation) with --neg_entity_count 100 / 400
and --max_span_size 8 / 12, each in its own process, and reads the run's peak RSS from its
config.json. Peak memory is set by the longest batches, so the training split is the --longest
longest 14res training sentences (a temporary file; dev and test are the full splits), which keeps
the benchmark short. Writes Results/benchmarks/memory.md. Memory does not depend on other load on
the machine, so no timings are reported here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scripts.bench_utils import write_report  # noqa: E402
SETTINGS = [(100, 8), (400, 8), (100, 12)]
# glibc's own tunables (no code change): a fixed 1 MiB mmap/trim threshold hands freed activation
# buffers back to the OS instead of keeping them in its heap (more page faults, so some speed)
GLIBC_RETURN_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "1048576"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--longest", type=int, default=160, help="training sentences (the longest ones)")
    ap.add_argument("--out", default="Results/benchmarks/memory.md")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(ROOT, "data", "d2e2s", args.dataset, "train_dep_triple_polarity_result.json")
        items = json.load(open(src, encoding="utf-8"))
        longest = sorted(items, key=lambda x: -len(x["tokens"]))[: args.longest]
        train_file = os.path.join(tmp, "train_longest.json")
        json.dump(longest, open(train_file, "w", encoding="utf-8"))
        runs = [(neg, span, False) for neg, span in SETTINGS] + [(neg, span, True) for neg, span in SETTINGS]
        for neg, span, glibc in runs:
            name = f"neg{neg}-span{span}{'-glibc' if glibc else ''}"
            cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", args.dataset, "--pretrained_deberta_name",
                   "all-MiniLM-L6-v2", "--epochs", str(args.epochs), "--seed", "42", "--neg_entity_count", str(neg),
                   "--max_span_size", str(span), "--results_dir", tmp, "--run_name", name, "--no_checkpoint",
                   "--train_file", train_file]
            env = os.environ | (GLIBC_RETURN_MEMORY if glibc else {})
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            summary = json.load(open(os.path.join(tmp, args.dataset, name, "config.json")))["summary"]
            rows.append((neg, span, glibc, summary["peak_rss_mb"], summary["children_peak_rss_mb"]))
            print(rows[-1], flush=True)
    base = {glibc: rss for neg, span, glibc, rss, _ in rows if (neg, span) == SETTINGS[0]}
    lines = ["# Peak memory vs number of span candidates", "",
             f"Written by `scripts/benchmark_memory.py` on {time.strftime('%Y-%m-%d')}: `train.py` on {args.dataset} with "
             f"the offline MiniLM encoder, {args.epochs} epoch(s) on the {args.longest} longest training sentences, then "
             "dev and test evaluation; TIN fusion, batch 16, CPU, one process (no DataLoader workers). Peak RSS of the "
             "training process; the last column is the largest finished child process (a helper forked at start-up: "
             "its figure counts pages shared with the parent, so it is not additional memory). 'glibc 1 MiB' runs set "
             f"`{' '.join(f'{k}={v}' for k, v in GLIBC_RETURN_MEMORY.items())}` in the environment (glibc's own "
             "tunables: freed activation buffers go back to the OS instead of staying in its heap; costs some "
             "speed in page faults).", "",
             "| allocator | --neg_entity_count | --max_span_size | peak RSS MB (training process) | vs 100 / 8 | "
             "largest child MB |", "|---|---|---|---|---|---|"]
    for neg, span, glibc, rss, child in rows:
        lines.append(f"| {'glibc 1 MiB' if glibc else 'default'} | {neg} | {span} | {rss:.0f} | "
                     f"{100 * (rss - base[glibc]) / base[glibc]:+.1f} % | {child:.0f} |")
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
