"""Host memory and epoch time of CPU training under each way of handing freed heap memory back.

    python scripts/benchmark_heap.py --rounds 2

glibc keeps freed activation buffers in its heap. Batches of different shapes fragment it, so a
run's resident set climbs well above what is in use at once. Three settings, each a fresh
`train.py` process (14res, offline MiniLM encoder, TIN, batch 16, CPU, the whole training set,
--epochs 2, dev and test evaluated after each epoch, no checkpoint):
  - `--cpu_heap_trim epoch`: malloc_trim at the start of each epoch only (release 0.2.2);
  - `--cpu_heap_trim large_batches` (the default): also just before and just after each of the
    epoch's largest batches;
  - glibc's tunables `MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_TRIM_THRESHOLD_=1048576` with the default:
    every buffer above 1 MiB is mapped on allocation and unmapped when freed.
The machine's speed drifts by tens of percent within minutes, so the settings alternate, round after
round; compare epoch times within a round. Losses must agree: none of this changes the arithmetic.
Writes Results/benchmarks/heap.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from scripts.bench_utils import write_report  # noqa: E402
from scripts.benchmark_memory import GLIBC_RETURN_MEMORY as GLIBC_1MIB  # noqa: E402
SETTINGS = [("epoch", "--cpu_heap_trim epoch", {}),
            ("large_batches", "--cpu_heap_trim large_batches", {}),
            ("large_batches + glibc 1 MiB", "--cpu_heap_trim large_batches", GLIBC_1MIB)]


def run(tmp: str, name: str, flags: str, env: dict, args) -> list[dict]:
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", args.dataset, "--pretrained_deberta_name",
           "all-MiniLM-L6-v2", "--epochs", str(args.epochs), "--seed", "42", "--results_dir", tmp,
           "--run_name", name, "--no_checkpoint", *flags.split()]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # only the setting's own tunables
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean | env)
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(tmp, args.dataset, name, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="Results/benchmarks/heap.md")
    args = ap.parse_args(argv)
    rows = []  # (round, setting, epoch, train s, peak MB so far, loss)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(1, args.rounds + 1):
            order = SETTINGS if r % 2 else SETTINGS[::-1]  # A B C, then C B A: both ends see the same drift
            for label, flags, env in order:
                records = run(tmp, f"r{r}-{label.replace(' ', '_')}", flags, env, args)
                for rec in records:
                    rows.append((r, label, rec["epoch"], rec["train_seconds"], rec["peak_rss_mb"], rec["loss"]))
                    print(rows[-1], flush=True)
    lines = ["# Host memory vs heap trimming (CPU training)", "",
             f"Written by `scripts/benchmark_heap.py` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPU cores): "
             f"`train.py` on {args.dataset}, offline MiniLM encoder, TIN, batch 16, the whole training set, "
             f"{args.epochs} epochs with dev and test evaluation after each, no checkpoint; each run a fresh process. "
             "Peak RSS is the training process's peak so far (getrusage), read after each epoch's evaluation. "
             "Settings alternate within each round (the machine's speed drifts), so compare epoch times "
             "within a round.", "",
             "| round | setting | epoch | train seconds | peak RSS MB so far | training loss |", "|---|---|---|---|---|---|"]
    for r, label, epoch, secs, peak, loss in rows:
        lines.append(f"| {r} | {label} | {epoch} | {secs:.1f} | {peak:.0f} | {loss:.5f} |")
    lines += ["", "## Summary", "",
              "Whole-run peak RSS: the largest over rounds; epoch time: the ratio to `epoch` in the same round "
              "and epoch, median over rounds and epochs.", "",
              "| setting | whole-run peak RSS MB (max over rounds) | median epoch-time ratio to `epoch` | "
              "losses equal to `epoch`'s |", "|---|---|---|---|"]
    base = {(r, e): (s, loss) for r, label, e, s, _, loss in rows if label == SETTINGS[0][0]}
    for label, _, _ in SETTINGS:
        mine = [x for x in rows if x[1] == label]
        ratios = [s / base[(r, e)][0] for r, _, e, s, _, _ in mine]
        same = all(loss == base[(r, e)][1] for r, _, e, _, _, loss in mine)
        lines.append(f"| {label} | {max(x[4] for x in mine):.0f} | {statistics.median(ratios):.3f} | "
                     f"{'yes' if same else 'NO'} |")
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
