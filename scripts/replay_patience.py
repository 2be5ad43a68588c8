"""Replay --patience on finished runs' dev curves (metrics.jsonl[.gz]), with no training: how many runs each
patience stops before their best dev epoch, and how many epochs it runs. Results/patience.md names its command."""
import argparse
import glob
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.summarize import as_decoding, decoding, load_run  # noqa: E402


def stop_epoch(dev_f1: list[float], patience: int) -> int:
    """The last epoch a run with --patience runs (train.py: stop once epoch - best epoch >= patience)."""
    best_epoch, best = 0, -1.0
    for epoch, f1 in enumerate(dev_f1, start=1):
        if f1 > best:
            best_epoch, best = epoch, f1
        if patience and epoch - best_epoch >= patience:
            return epoch
    return len(dev_f1)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders (glob patterns)")
    ap.add_argument("--patience", nargs="+", type=int, default=[3, 5, 8, 10, 12, 15])
    ap.add_argument("--decoding", type=decoding, default=None, help="replay the dev curves under this decoding, as "
                    "summarize.py --decoding (runs without its per-epoch records are named and left out)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    decoded = {os.path.normpath(run["dir"]): as_decoding(run, args.decoding) if args.decoding else run
               for pattern in args.runs for run in filter(None, map(load_run, sorted(glob.glob(pattern))))
               if "summary" in run["cfg"]}  # finished: a running run's curve is not whole yet
    curves = {d: [r["dev"]["triplet"]["f1"] for r in run["history"]] for d, run in decoded.items() if run}
    without = [os.path.relpath(d) for d, run in decoded.items() if not run]
    best = {run: max(range(len(f1)), key=lambda i: (f1[i], -i)) + 1 for run, f1 in curves.items()}
    lines = [f"# --patience replayed on {len(curves)} finished runs{' under ' + args.decoding if args.decoding else ''}\n",
             f"`python scripts/replay_patience.py {shlex.join(argv)}`\n",
             "A run stops once its dev triplet F1 has not improved for N epochs. A patience is safe when no run "
             "stops before its best dev epoch.\n",
             "| patience | runs stopped before their best epoch | epochs run | of all epochs |", "|---|---|---|---|"]
    total = sum(map(len, curves.values()))
    for n in args.patience:
        stops = {run: stop_epoch(f1, n) for run, f1 in curves.items()}
        early = [os.path.relpath(run) for run in curves if stops[run] < best[run]]
        ran = sum(stops.values())
        lines.append(f"| {n} | {len(early)}{' (' + ', '.join(early) + ')' if early else ''} | {ran} | {100 * ran / total:.0f}% |")
    lines.append(f"\nBest dev epochs: {', '.join(f'{os.path.relpath(r)} {best[r]}/{len(curves[r])}' for r in curves)}.")
    if without:
        lines.append(f"\nLeft out, with no per-epoch {args.decoding} records: {', '.join(without)}.")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
