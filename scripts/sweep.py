"""Run a grid of train.py runs: datasets x fusion x heads x enhanced SemGCN x seeds.

    python scripts/sweep.py --datasets 14res --fusions tin cross_attention lightweight --heads 4 \
        --seeds 1 2 3 --parallel 2 --name cpu-sweep -- --pretrained_deberta_name all-MiniLM-L6-v2 --epochs 10
    python scripts/sweep.py --grid grid.json      # the same keys in a JSON (or YAML) file

Every run gets a deterministic name (<name>-<dataset>-<fusion>[-h<heads>][-esem]-seed<seed>) under
Results/<dataset>/. Finished runs (config.json with a summary) are skipped; unfinished ones are
resumed (--resume). Flags after `--` go to every train.py. With --parallel N, N runs go at once
(each with --threads = cores / N unless you pass --threads). Afterwards scripts/summarize.py
writes the table and plot (--summary, default Results/summary.md).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models.fusion import DEFAULT_HEADS  # noqa: E402


def load_grid(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml  # optional dependency, only for YAML grids
        return yaml.safe_load(text)
    return json.loads(text)


def expand(grid: dict) -> list[dict]:
    runs = []
    for ds, fusion, enhanced, seed in itertools.product(grid["datasets"], grid["fusions"], grid["enhanced"], grid["seeds"]):
        if fusion not in DEFAULT_HEADS:  # no attention heads (tin, tin_no_lstm)
            heads_options = [None]
        elif fusion == "lightweight":
            heads_options = grid.get("lightweight_heads", [DEFAULT_HEADS["lightweight"]])
        else:
            heads_options = grid["heads"]
        for heads in heads_options:
            runs.append({"dataset": ds, "fusion": fusion, "heads": heads, "enhanced": enhanced, "seed": seed})
    return runs


def run_name(prefix: str, r: dict) -> str:
    parts = [prefix, r["fusion"]] + ([f"h{r['heads']}"] if r["heads"] else []) + (["esem"] if r["enhanced"] else [])
    return "-".join(parts + [f"seed{r['seed']}"])


def status(results_dir: str, r: dict, name: str) -> str:
    cfg = os.path.join(results_dir, r["dataset"], name, "config.json")
    if not os.path.exists(cfg):
        return "new"
    try:
        return "done" if "summary" in json.load(open(cfg, encoding="utf-8")) else "unfinished"
    except json.JSONDecodeError:
        return "unfinished"


def command(r: dict, name: str, args, extra: list[str], threads: int | None) -> list[str]:
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", r["dataset"], "--fusion", r["fusion"],
           "--seed", str(r["seed"]), "--run_name", name, "--results_dir", args.results_dir, "--resume"]
    if r["heads"]:
        cmd += ["--cross_attention_heads", str(r["heads"])]
    if r["enhanced"]:
        cmd.append("--use_enhanced_semgcn")
    if threads and "--threads" not in extra:
        cmd += ["--threads", str(threads)]
    return cmd + extra


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", help="JSON/YAML file with datasets, fusions, heads, enhanced, seeds")
    ap.add_argument("--datasets", nargs="+", default=["14res"])
    ap.add_argument("--fusions", nargs="+", default=["tin", "cross_attention", "lightweight"])
    ap.add_argument("--heads", nargs="+", type=int, default=[8, 4], help="heads of --fusion cross_attention")
    ap.add_argument("--lightweight_heads", nargs="+", type=int, default=[DEFAULT_HEADS["lightweight"]],
                    help="heads of --fusion lightweight")
    ap.add_argument("--enhanced", nargs="+", type=int, default=[0], help="0 and/or 1 (--use_enhanced_semgcn)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--name", default="sweep", help="prefix of every run name")
    ap.add_argument("--results_dir", default="Results")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time")
    ap.add_argument("--summary", default="Results/summary.md")
    ap.add_argument("--plot", default="Results/summary.png")
    ap.add_argument("--dry_run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    grid = load_grid(args.grid) if args.grid else {}
    grid = {"datasets": grid.get("datasets", args.datasets), "fusions": grid.get("fusions", args.fusions),
            "heads": grid.get("heads", args.heads), "lightweight_heads": grid.get("lightweight_heads", args.lightweight_heads),
            "enhanced": [bool(x) for x in grid.get("enhanced", args.enhanced)],
            "seeds": grid.get("seeds", args.seeds)}
    runs = expand(grid)
    threads = max(1, (os.cpu_count() or 1) // args.parallel) if args.parallel > 1 else None
    todo = []
    for r in runs:
        name = run_name(args.name, r)
        st = status(args.results_dir, r, name)
        print(f"{st:10s} {r['dataset']}/{name}")
        if st != "done":
            todo.append((r, name))
    os.makedirs(os.path.join(args.results_dir, "sweep_logs"), exist_ok=True)

    def launch(job):
        r, name = job
        cmd = command(r, name, args, extra, threads)
        if args.dry_run:
            print(" ".join(cmd))
            return 0
        log_path = os.path.join(args.results_dir, "sweep_logs", f"{r['dataset']}-{name}.log")
        t0 = time.time()
        with open(log_path, "a", encoding="utf-8") as log:
            rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        print(f"{'ok' if rc == 0 else f'FAILED ({rc})'} {r['dataset']}/{name} in {time.time() - t0:.0f}s (log: {log_path})",
              flush=True)
        return rc

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        codes = list(pool.map(launch, todo))
    if args.dry_run:
        return 0
    dirs = [os.path.join(args.results_dir, r["dataset"], run_name(args.name, r)) for r in runs]
    subprocess.call([sys.executable, os.path.join(ROOT, "scripts", "summarize.py"), *dirs, "--out", args.summary,
                     "--plot", args.plot, "--title", f"Sweep {args.name}"], cwd=ROOT)
    return 1 if any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
