"""Peak memory of a whole training run (all processes) as the number of candidate spans grows.

    python scripts/benchmark_memory.py          # 1 epoch of 14res, offline encoder, per setting

Runs train.py for one epoch (train + dev + test evaluation) with --neg_entity_count 100 / 400 and
--max_span_size 8 / 12, each in its own process, and reads the run's peak RSS from its config.json.
Writes Results/benchmarks/memory.md.
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
SETTINGS = [(100, 8), (400, 8), (100, 12)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="Results/benchmarks/memory.md")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for neg, span in SETTINGS:
            name = f"neg{neg}-span{span}"
            cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", args.dataset, "--pretrained_deberta_name",
                   "all-MiniLM-L6-v2", "--epochs", str(args.epochs), "--seed", "42", "--neg_entity_count", str(neg),
                   "--max_span_size", str(span), "--results_dir", tmp, "--run_name", name, "--no_checkpoint"]
            t0 = time.time()
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            summary = json.load(open(os.path.join(tmp, args.dataset, name, "config.json")))["summary"]
            rows.append((neg, span, summary["peak_rss_mb"], summary["mean_train_seconds_per_epoch"], time.time() - t0))
            print(rows[-1], flush=True)
    base = rows[0][2]
    lines = ["# Peak memory vs number of span candidates", "",
             f"Written by `scripts/benchmark_memory.py` on {time.strftime('%Y-%m-%d')}: `train.py` on {args.dataset} with "
             f"the offline MiniLM encoder, {args.epochs} epoch(s) (training, dev and test evaluation), TIN fusion, batch 16, "
             "CPU, one process (no DataLoader workers). Peak RSS of the whole run (the process and any children).", "",
             "| --neg_entity_count | --max_span_size | peak RSS MB | vs 100 / 8 | s per train epoch |", "|---|---|---|---|---|"]
    for neg, span, rss, sec, _ in rows:
        lines.append(f"| {neg} | {span} | {rss:.0f} | {100 * (rss - base) / base:+.1f} % | {sec:.1f} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
