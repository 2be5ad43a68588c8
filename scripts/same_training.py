"""Check that runs which differ only in how they chose their epoch trained identically: the training
losses of every epoch (loss, span loss, pair loss in metrics.jsonl) must be equal to the last digit.

    python scripts/same_training.py "Results/*/spans-*" --new spans --old final --out Results/same_training.md

Each run named <new>-<rest> is compared with <old>-<rest> in the same dataset folder; runs without such
a counterpart are listed as such. Exits non-zero if any pair differs.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_utils import write_report  # noqa: E402

LOSSES = ("loss", "span_loss", "pair_loss")


def epoch_losses(run_dir: str) -> list[tuple]:
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [tuple(json.loads(line)[k] for k in LOSSES) for line in f if line.strip()]


def compare(new_run: str, old_run: str) -> tuple[int, int]:
    """(epochs compared, epochs whose losses differ); runs of different lengths differ at every extra epoch."""
    a, b = epoch_losses(new_run), epoch_losses(old_run)
    return max(len(a), len(b)), sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders or globs, named <new>-...")
    p.add_argument("--new", required=True, help="run-name prefix of the runs given")
    p.add_argument("--old", required=True, help="run-name prefix of the runs they should reproduce")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    runs = sorted({r for pattern in args.runs for r in glob.glob(pattern)
                   if os.path.basename(r).startswith(args.new + "-")})
    if not runs:
        raise SystemExit(f"error: no run folder named {args.new}-* matches {' '.join(args.runs)}")
    rows, differing, compared = [], 0, 0
    for run in runs:
        old = os.path.join(os.path.dirname(run), args.old + os.path.basename(run)[len(args.new):])
        if not os.path.isdir(old):
            rows.append(f"| `{run}` | (no `{old}`) | | |")
            continue
        epochs, bad = compare(run, old)
        compared += 1
        differing += bad > 0
        rows.append(f"| `{run}` | `{old}` | {epochs} | {'yes' if bad == 0 else f'no ({bad} epochs differ)'} |")
    command = "python scripts/same_training.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    write_report(args.out, [
        f"# Same training: `{args.new}` runs against `{args.old}` runs",
        "",
        f"Written by `{command}`. Equal means the training loss, span loss and pair loss of every epoch "
        "(metrics.jsonl) are equal to the last digit.",
        "",
        f"**{compared - differing} of {compared} pairs trained identically.**",
        "",
        "| run | reproduces | epochs | equal losses |",
        "|---|---|---|---|",
        *rows,
    ])
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
