"""Whole `train.py` runs of two code versions, timed alternately on the same machine.

    python scripts/benchmark_commits.py 66d2bcf HEAD --rounds 2 --epochs 2

The speed of a shared machine drifts by tens of percent within minutes, so an epoch timed now cannot
be compared with one timed an hour ago. This script alternates the two versions (A B, A B, ...) so
that both see the same drift. Each version is checked out into a temporary git worktree (sharing
this checkout's data/); each measurement is a fresh `train.py` process running the README command
(14res, offline MiniLM encoder, seed 42) with --epochs N and no checkpoint. From each run it reads
the per-epoch training seconds (metrics.jsonl) and the whole-run peak RSS (config.json), so it needs
no code of either version beyond the command line. Appends a section to Results/benchmarks/commits.md.
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


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def run_once(tree: str, results: str, name: str, args) -> dict:
    cmd = [sys.executable, "train.py", "--dataset", args.dataset, "--pretrained_deberta_name", "all-MiniLM-L6-v2",
           "--epochs", str(args.epochs), "--seed", "42", "--results_dir", results, "--run_name", name,
           "--no_checkpoint", *args.extra]
    res = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} failed in {tree}:\n{res.stderr[-2000:]}")
    run_dir = os.path.join(results, args.dataset, name)
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        epochs = [json.loads(line) for line in f]
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        summary = json.load(f)["summary"]
    return {"epoch_seconds": [e["train_seconds"] for e in epochs], "peak_rss_mb": summary["peak_rss_mb"],
            "test_triplet_f1": summary["test_triplet_f1"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="first version (commit, tag or branch): the baseline")
    ap.add_argument("b", help="second version")
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="Results/benchmarks/commits.md")
    ap.add_argument("extra", nargs="*", help="more train.py flags for both versions (after --)")
    args = ap.parse_args(argv)
    shas = {v: git("rev-parse", "--short", v) for v in (args.a, args.b)}
    runs = {args.a: [], args.b: []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for v in (args.a, args.b):
            trees[v] = os.path.join(tmp, shas[v])
            git("worktree", "add", "--detach", trees[v], shas[v])
            os.symlink(os.path.join(ROOT, "data"), os.path.join(trees[v], "data"))
        try:
            for r in range(args.rounds):
                for v in (args.a, args.b):
                    out = run_once(trees[v], os.path.join(tmp, "results"), f"{shas[v]}-round{r + 1}", args)
                    runs[v].append(out)
                    print(f"round {r + 1} {shas[v]}: epochs {', '.join(f'{s:.1f}' for s in out['epoch_seconds'])} s, "
                          f"peak RSS {out['peak_rss_mb']:.0f} MB", flush=True)
        finally:
            for v in (args.a, args.b):
                git("worktree", "remove", "--force", trees[v])
    a_epochs = [s for run in runs[args.a] for s in run["epoch_seconds"]]
    b_epochs = [s for run in runs[args.b] for s in run["epoch_seconds"]]
    ratio = statistics.median(b_epochs) / statistics.median(a_epochs)
    lines = [f"\n## {shas[args.a]} (A) vs {shas[args.b]} (B): {args.dataset}, MiniLM, TIN, batch 16, CPU",
             f"\nMeasured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPU cores by "
             f"`python scripts/benchmark_commits.py {args.a} {args.b} --epochs {args.epochs} --rounds {args.rounds}"
             f"{' -- ' + ' '.join(args.extra) if args.extra else ''}`: the README command with --epochs {args.epochs}, "
             "each run a fresh process, the versions alternating A B A B.\n",
             "| round | version | training epochs (s) | peak RSS (MB) |", "|---|---|---|---|"]
    for r in range(args.rounds):
        for v in (args.a, args.b):
            run = runs[v][r]
            lines.append(f"| {r + 1} | {shas[v]} | {', '.join(f'{s:.1f}' for s in run['epoch_seconds'])} | "
                         f"{run['peak_rss_mb']:.0f} |")
    lines.append(f"\nMedian training epoch: {statistics.median(a_epochs):.1f} s (A), {statistics.median(b_epochs):.1f} s "
                 f"(B); B / A = **{ratio:.3f}**. Peak RSS, largest of the runs: "
                 f"{max(r['peak_rss_mb'] for r in runs[args.a]):.0f} MB (A), "
                 f"{max(r['peak_rss_mb'] for r in runs[args.b]):.0f} MB (B).")
    text = "\n".join(lines) + "\n"
    print(text)
    out = os.path.join(ROOT, args.out)
    new = not os.path.exists(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "a", encoding="utf-8") as f:
        if new:
            f.write("# Training epochs of two code versions, timed alternately\n\nWritten by "
                    "`scripts/benchmark_commits.py`; each section is one invocation.\n")
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
