r"""Run a grid of train.py runs: datasets x fusion x heads x enhanced SemGCN x seeds.

    python scripts/sweep.py --datasets 14res --fusions tin cross_attention lightweight --heads 4 \
        --seeds 1 2 3 --parallel 2 --name cpu-sweep -- --pretrained_deberta_name all-MiniLM-L6-v2 --epochs 10

Each run's folder is Results/<dataset>/<name>-<fusion>[-h<heads>][-esem]-seed<seed>; finished runs are
skipped, unfinished ones resumed. Flags after `--` go to every train.py. Then summarize.py writes --summary.
"""
import argparse
import itertools
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aste.runs import RunFolder  # noqa: E402
from Parameter import parse_args  # noqa: E402
from scripts.summarize import load_run  # noqa: E402


def expand(args) -> list[dict]:
    default_heads = {f: parse_args(["--fusion", f]).cross_attention_heads for f in args.fusions}
    # --heads are cross-attention's; another fusion runs with its own (None: it takes no heads)
    return [{"dataset": ds, "fusion": fusion, "heads": heads, "enhanced": bool(enhanced), "seed": seed}
            for ds, fusion, enhanced, seed in itertools.product(args.datasets, args.fusions, args.enhanced, args.seeds)
            for heads in (args.heads if fusion == "cross_attention" else [default_heads[fusion]])]


def run_name(prefix: str, r: dict) -> str:
    parts = [prefix, r["fusion"]] + ([f"h{r['heads']}"] if r["heads"] else []) + (["esem"] if r["enhanced"] else [])
    return "-".join(parts + [f"seed{r['seed']}"])


def keep_best_checkpoints(results_dir: str, runs: list[dict], prefix: str) -> list[str]:
    """--keep_checkpoints best: of each dataset's finished runs, only the one with the highest dev triplet F1
    (the first in the grid on a tie) keeps best.safetensors; returns the files deleted."""
    best, removed = {}, []  # dataset -> (dev triplet F1, best.safetensors) of its best finished run so far
    for r in runs:
        folder = os.path.join(results_dir, r["dataset"], run_name(prefix, r))
        weights = os.path.join(folder, "best.safetensors")
        summary = RunFolder(folder).finished_summary()
        if summary is None or not os.path.exists(weights):
            continue
        f1 = summary["dev_triplet_f1"]
        if r["dataset"] in best and f1 <= best[r["dataset"]][0]:
            loser = weights
        else:
            loser, best[r["dataset"]] = best.get(r["dataset"], (None, None))[1], (f1, weights)
        if loser:
            os.remove(loser)
            removed.append(loser)
    return removed


def command(r: dict, name: str, args, extra: list[str], threads: int | None) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", r["dataset"], "--fusion", r["fusion"],
            "--seed", str(r["seed"]), "--run_name", name, "--results_dir", args.results_dir, "--resume",
            *(["--cross_attention_heads", str(r["heads"])] if r["heads"] else []),
            *(["--use_enhanced_semgcn"] if r["enhanced"] else []),
            *(["--threads", str(threads)] if threads and "--threads" not in extra else []),
            *(["--no_checkpoint"] if args.keep_checkpoints == "none" else []), *extra]


EXIT_TIME_BUDGET = 75  # train.py's status when its --time_budget stopped it
PRUNING = threading.Lock()  # parallel runs may finish at once


def prune(args, runs: list[dict]) -> None:
    if args.keep_checkpoints == "best" and not args.dry_run:
        with PRUNING:
            for path in keep_best_checkpoints(args.results_dir, runs, args.name):
                print(f"deleted {path} (--keep_checkpoints best: its dataset has a better run on dev)", flush=True)


def parse(argv: list[str]):
    """(the sweep's flags, the flags after `--` that go to every train.py)"""
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["14res"])
    ap.add_argument("--fusions", nargs="+", default=["tin", "cross_attention", "lightweight"])
    ap.add_argument("--heads", nargs="+", type=int, default=[8, 4], help="heads of --fusion cross_attention")
    ap.add_argument("--enhanced", nargs="+", type=int, default=[0], help="0 and/or 1 (--use_enhanced_semgcn)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--name", default="sweep", help="prefix of every run name")
    ap.add_argument("--results_dir", default="Results")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time, each with --threads cores/N")
    ap.add_argument("--summary", default="Results/summary.md")
    ap.add_argument("--plot", default="Results/summary.png")
    ap.add_argument("--keep_checkpoints", choices=["none", "best", "all"], default="best",
                    help="best.safetensors kept: best = only each dataset's best finished run's on dev (the first "
                         "in the grid on a tie), none = none written (--no_checkpoint), all = every run's")
    ap.add_argument("--time_budget", type=float, default=None, metavar="HOURS",
                    help="hours for the whole sweep, each run getting what is left; stops with status 75 (the "
                         "same command continues) once a run is stopped or less than the slowest epoch is left")
    ap.add_argument("--dry_run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    if args.time_budget is not None and "--time_budget" in extra:
        ap.error("give --time_budget to the sweep (it hands each run what is left), not after --")
    return args, extra


def slowest_epoch(run_dirs: list[str]) -> float:
    """Seconds of the slowest epoch (training + dev + test) in these runs' records, 0 if none."""
    records = [r for run in filter(None, map(load_run, run_dirs)) for r in run["history"]]
    return max((r["train_seconds"] + r["dev_seconds"] + r["test_seconds"] for r in records), default=0.0)


def main(argv=None) -> int:
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    runs = expand(args)
    threads = max(1, (os.cpu_count() or 1) // args.parallel) if args.parallel > 1 else None
    dirs = [os.path.join(args.results_dir, r["dataset"], run_name(args.name, r)) for r in runs]
    todo = []
    for r, folder in zip(runs, dirs):
        done = RunFolder(folder).finished_summary() is not None
        started = os.path.exists(os.path.join(folder, "config.json"))
        print(f"{'done' if done else 'unfinished' if started else 'new':10s} {r['dataset']}/{run_name(args.name, r)}")
        if not done:
            todo.append((r, run_name(args.name, r)))
    os.makedirs(os.path.join(args.results_dir, "sweep_logs"), exist_ok=True)
    deadline = time.time() + 3600 * args.time_budget if args.time_budget else None
    out_of_time = threading.Event()

    def launch(job):
        r, name = job
        cmd = command(r, name, args, extra, threads)
        if deadline is not None:
            left = deadline - time.time()
            if out_of_time.is_set() or left < slowest_epoch(dirs):
                out_of_time.set()
                return EXIT_TIME_BUDGET
            cmd += ["--time_budget", f"{left / 3600:.6g}"]
        if args.dry_run:
            print(" ".join(cmd))
            return 0
        log_path = os.path.join(args.results_dir, "sweep_logs", f"{r['dataset']}-{name}.log")
        t0 = time.time()
        with open(log_path, "a", encoding="utf-8") as log:
            rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if rc == EXIT_TIME_BUDGET:
            out_of_time.set()
        status = "ok" if rc == 0 else "STOPPED (time budget)" if rc == EXIT_TIME_BUDGET else f"FAILED ({rc})"
        print(f"{status} {r['dataset']}/{name} in {time.time() - t0:.0f}s (log: {log_path})", flush=True)
        prune(args, runs)
        return rc

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        codes = list(pool.map(launch, todo))
    prune(args, runs)  # also runs finished before this sweep (e.g. under --keep_checkpoints all)
    if args.dry_run:
        return 0
    if EXIT_TIME_BUDGET in codes:
        print(f"time budget: {codes.count(EXIT_TIME_BUDGET)} run(s) stopped or not started; run the same command "
              "again to continue", flush=True)
        return EXIT_TIME_BUDGET
    subprocess.call([sys.executable, os.path.join(ROOT, "scripts", "summarize.py"), *dirs, "--out", args.summary,
                     "--plot", args.plot, "--title", f"Sweep {args.name}"], cwd=ROOT)
    return 1 if any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
