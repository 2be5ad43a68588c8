"""Whole `train.py` runs of two code versions, timed alternately (A B, A B, ...) so that both see the same
drift in the machine's speed: the README command with --epochs N, no checkpoint, a fresh process per run,
each version in a temporary git worktree sharing data/. Appends a section to Results/benchmarks/commits.md.

    python scripts/benchmark_commits.py 66d2bcf HEAD --rounds 2 --epochs 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scripts.bench_utils import MINILM, append_report  # noqa: E402
from scripts.summarize import load_run  # noqa: E402


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def run_once(tree: str, results: str, name: str, args) -> dict:
    cmd = [sys.executable, "train.py", "--dataset", args.dataset, "--pretrained_deberta_name", MINILM,
           "--epochs", str(args.epochs), "--seed", "42", "--results_dir", results, "--run_name", name,
           "--no_checkpoint", *args.extra]
    res = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} failed in {tree}:\n{res.stderr[-2000:]}")
    run = load_run(os.path.join(results, args.dataset, name))
    return {"epoch_seconds": [r["train_seconds"] for r in run["history"]],
            "peak_rss_mb": run["cfg"]["summary"]["peak_rss_mb"]}


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
    runs, rows = {args.a: [], args.b: []}, []  # rows: of the report's table, in the order run
    with tempfile.TemporaryDirectory() as tmp:
        trees = {v: os.path.join(tmp, shas[v]) for v in (args.a, args.b)}
        for v in (args.a, args.b):
            git("worktree", "add", "--detach", trees[v], shas[v])
            os.symlink(os.path.join(ROOT, "data"), os.path.join(trees[v], "data"))
        try:
            for r in range(args.rounds):
                for v in (args.a, args.b):
                    out = run_once(trees[v], os.path.join(tmp, "results"), f"{shas[v]}-round{r + 1}", args)
                    runs[v].append(out)
                    rows.append(f"| {r + 1} | {shas[v]} | {', '.join(f'{s:.1f}' for s in out['epoch_seconds'])} | "
                                f"{out['peak_rss_mb']:.0f} |")
                    print(rows[-1], flush=True)
        finally:
            for v in (args.a, args.b):
                git("worktree", "remove", "--force", trees[v])
    median = {v: statistics.median([s for run in runs[v] for s in run["epoch_seconds"]]) for v in (args.a, args.b)}
    peak = {v: max(run["peak_rss_mb"] for run in runs[v]) for v in (args.a, args.b)}
    lines = [f"\n## {shas[args.a]} (A) vs {shas[args.b]} (B): {args.dataset}, MiniLM, TIN, batch 16, CPU",
             f"\nMeasured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPU cores by "
             f"`python scripts/benchmark_commits.py {args.a} {args.b} --epochs {args.epochs} --rounds {args.rounds}"
             f"{' -- ' + ' '.join(args.extra) if args.extra else ''}`: the README command with --epochs {args.epochs}, "
             "each run a fresh process, the versions alternating A B A B.\n",
             "| round | version | training epochs (s) | peak RSS (MB) |", "|---|---|---|---|", *rows,
             f"\nMedian training epoch: {median[args.a]:.1f} s (A), {median[args.b]:.1f} s (B); B / A = "
             f"**{median[args.b] / median[args.a]:.3f}**. Peak RSS, largest of the runs: {peak[args.a]:.0f} MB (A), "
             f"{peak[args.b]:.0f} MB (B)."]
    append_report(os.path.join(ROOT, args.out), "Training epochs of two code versions, timed alternately",
                  "benchmark_commits.py", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
