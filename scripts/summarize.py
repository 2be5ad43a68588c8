"""Summarise finished runs: mean +- std over seeds per configuration, and per-epoch F1 curves.

    python scripts/summarize.py Results/14res/sweep-* --out Results/summary.md --plot Results/summary.png
    python scripts/summarize.py Results/14res/minilm-tin-seed42 --out -     # one run, to stdout

A configuration is everything in config.json's args except seed, run_name and output paths. Test
F1, precision and recall are always the test scores at the best-dev epoch (dev-selected; P and R are
means over seeds); columns show each seed's test F1 and the epochs chosen.
"""
from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aste.runs import RESUME_FREE, saved_flag  # noqa: E402
from models.decoding import OVERLAP_FILTERS  # noqa: E402
from models.fusion import fusion_heads  # noqa: E402
from Parameter import parse_args  # noqa: E402

IGNORED = RESUME_FREE | {"seed", "no_checkpoint", "eval_only", "checkpoint"}  # do not change what is computed
SHOWN = [("dataset", "dataset"), ("fusion", "fusion"), ("cross_attention_heads", "heads"),
         ("use_enhanced_semgcn", "enh. SemGCN"), ("epochs", "epochs")]


def load_run(run_dir: str) -> dict | None:
    try:
        cfg = json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8"))
        history = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") if x.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    if "summary" not in cfg:
        return None  # unfinished
    return {"dir": run_dir, "cfg": cfg, "history": history}


def as_decoding(run: dict, overlap: str) -> dict | None:
    """The run as if it had decoded with --overlap_filter `overlap`: each epoch's dev/test metrics
    under that option (metrics.jsonl's "decodings", written since training evaluates every option),
    and the best epoch chosen again on dev. Training does not depend on the decoding, so this is
    what the run would have reported (its best.safetensors may be another epoch's). None if the
    run predates the "decodings" records."""
    args = run["cfg"]["args"]
    if saved_flag(args, "overlap_filter", "spans") == overlap:
        return run
    if not all(overlap in r.get("decodings", {}) for r in run["history"]):
        return None
    history = [r | r["decodings"][overlap] for r in run["history"]]
    best = max(history, key=lambda r: (r["dev"]["triplet"]["f1"], -r["epoch"]))  # the first best, as in training
    summary = run["cfg"]["summary"] | {"best_epoch": best["epoch"], "dev_triplet_f1": best["dev"]["triplet"]["f1"],
                                       "test_triplet_f1": best["test"]["triplet"]["f1"],
                                       "test_entity_f1": best["test"]["entity"]["f1"]}
    cfg = run["cfg"] | {"args": args | {"overlap_filter": overlap}, "summary": summary}
    return run | {"cfg": cfg, "history": history}


def config_key(args: dict) -> tuple:
    """What a run computed: every flag that matters, with what a run did for flags it predates."""
    defaults = option_defaults(args.get("fusion") or "tin")
    return tuple(sorted((k, json.dumps(saved_flag(args, k, default))) for k, default in defaults.items()
                        if k not in IGNORED and not k.endswith("_file")))


# columns of their own, or flags that do not change what is computed
NOT_OPTIONS = RESUME_FREE | {"dataset", "fusion", "use_cross_attention", "cross_attention_heads", "use_enhanced_semgcn",
                             "epochs", "pretrained_deberta_name", "seed", "train_file", "dev_file", "test_file",
                             "data_dir", "eval_only", "checkpoint", "no_checkpoint", "deberta_feature_dim", "emb_dim"}


@functools.cache
def option_defaults(fusion: str = "tin") -> dict:
    """Every flag's default as train.py resolves it for this fusion (some defaults depend on it)."""
    return vars(parse_args(["--fusion", fusion]))


def non_default_options(args: dict) -> str:
    """The flags that change results and differ from today's defaults (a run that predates a flag shows
    what it did then), e.g. data_format=aste."""
    defaults = option_defaults(args.get("fusion") or "tin")
    diff = [f"{k}={saved_flag(args, k, v)}" for k, v in defaults.items()
            if k not in NOT_OPTIONS and saved_flag(args, k, v) != v]
    return ", ".join(diff) or "defaults"


def describe(args: dict) -> dict:
    heads = fusion_heads(args["fusion"], args.get("cross_attention_heads")) or "-"
    return {"dataset": args["dataset"], "fusion": args["fusion"], "heads": heads,
            "enh. SemGCN": "yes" if args.get("use_enhanced_semgcn") else "no", "epochs": args["epochs"],
            "encoder": os.path.basename(os.path.normpath(args["pretrained_deberta_name"])),
            "options": non_default_options(args)}


def run_environment(cfg: dict) -> dict:
    """How a run was made, from either shape of config.json: commit, dirty (None when not recorded), device
    and library versions. Runs made by the current code have an "environment" block; older ones have top-level
    "git_commit", "device" and "versions"."""
    if "environment" in cfg:
        env = dict(cfg["environment"])
    else:
        env = {"commit": cfg.get("git_commit"), "dirty": None, "device": cfg.get("device"), **cfg.get("versions", {})}
    env.setdefault("commit", None)
    env.setdefault("dirty", None)
    return env


def commit_label(cfg: dict) -> str:
    """Short commit of a run's code, '<sha>+dirty' when the checkout had uncommitted changes, 'unknown' if none."""
    env = run_environment(cfg)
    if not env["commit"]:
        return "unknown"
    return env["commit"][:7] + ("+dirty" if env["dirty"] else "")


def commits(runs: list[dict]) -> str:
    """The code version(s) the runs were made with (config.json's commit, short; '+dirty' for uncommitted changes)."""
    return ", ".join(f"`{c}`" for c in sorted({commit_label(r["cfg"]) for r in runs}))


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def summarize(runs: list[dict], pool_commits: bool = False) -> tuple[str, dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        # the same flags at two commits are two measurements, kept apart unless pool_commits says the
        # commits compute the same thing (the code column then lists them all)
        groups.setdefault((config_key(r["cfg"]["args"]), None if pool_commits else commit_label(r["cfg"])), []).append(r)
    lines = ["| dataset | encoder | fusion | heads | enh. SemGCN | other flags | epochs | seeds | test triplet F1 "
             "(dev-selected) | test triplet P / R | test triplet F1 per seed | test entity F1 | dev triplet F1 | "
             "best epochs | s / train epoch | s / test eval | peak RSS MB | code |", "|" + "---|" * 18]
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(describe(kv[1][0]["cfg"]["args"]).values())):
        d = describe(rs[0]["cfg"]["args"])
        sm = [r["cfg"]["summary"] for r in rs]
        best_test = [r["history"][s["best_epoch"] - 1]["test"]["triplet"] for r, s in zip(rs, sm)]
        lines.append("| " + " | ".join([
            d["dataset"], d["encoder"], d["fusion"], str(d["heads"]), d["enh. SemGCN"], d["options"], str(d["epochs"]),
            ", ".join(str(r["cfg"]["args"]["seed"]) for r in rs),
            mean_std([s["test_triplet_f1"] for s in sm]),
            f"{statistics.mean(t['p'] for t in best_test):.2f} / {statistics.mean(t['r'] for t in best_test):.2f}",
            ", ".join(f"{r['cfg']['args']['seed']}: {s['test_triplet_f1']:.2f}" for r, s in zip(rs, sm)),
            mean_std([s["test_entity_f1"] for s in sm]),
            mean_std([s["dev_triplet_f1"] for s in sm]), ", ".join(str(s["best_epoch"]) for s in sm),
            f"{statistics.mean(s['mean_train_seconds_per_epoch'] for s in sm):.1f}",
            f"{statistics.mean(s['mean_test_eval_seconds'] for s in sm):.2f}",
            f"{max(s['peak_rss_mb'] for s in sm):.0f}", commits(rs)]) + " |")
    return "\n".join(lines), groups


def plot(groups: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, (key, rs) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        d = describe(rs[0]["cfg"]["args"])
        label = f"{d['dataset']} {d['fusion']}" + (f" h{d['heads']}" if d["heads"] != "-" else "") + \
                (" +enh" if d["enh. SemGCN"] == "yes" else "") + f" (n={len(rs)})"
        color = f"C{i % 10}"
        for ax, split in zip(axes, ("dev", "test")):
            epochs = sorted({r["epoch"] for run in rs for r in run["history"]})
            per_epoch = [[run["history"][e - 1][split]["triplet"]["f1"] for run in rs if len(run["history"]) >= e]
                         for e in epochs]
            mean = [statistics.mean(v) for v in per_epoch]
            ax.plot(epochs, mean, color=color, label=label)
            if len(rs) > 1:
                sd = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_epoch]
                ax.fill_between(epochs, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                                color=color, alpha=0.15)
    for ax, split in zip(axes, ("dev", "test")):
        ax.set_title(f"{split} triplet F1 per epoch (mean ± std over seeds)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("triplet F1")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders (globs allowed)")
    ap.add_argument("--out", default="Results/summary.md", help="markdown file, or - for stdout")
    ap.add_argument("--plot", default=None, help="PNG of dev/test triplet F1 per epoch")
    ap.add_argument("--title", default="Summary of runs")
    ap.add_argument("--pool_commits", action="store_true",
                    help="group runs with the same flags made at different commits (only when the code between "
                         "those commits does not change what a run computes; the code column lists the commits)")
    ap.add_argument("--decoding", choices=OVERLAP_FILTERS, default=None,
                    help="choose each run's best epoch as if it had decoded with this --overlap_filter (from the "
                         "per-epoch records of every option in metrics.jsonl; older runs without them are skipped)")
    args = ap.parse_args(argv)
    dirs = sorted({d for pattern in args.runs for d in (glob.glob(pattern) or [pattern]) if os.path.isdir(d)})
    runs = [r for r in map(load_run, dirs) if r is not None]
    skipped = len(dirs) - len(runs)
    if args.decoding:
        redecoded = [as_decoding(r, args.decoding) for r in runs]
        for r, new in zip(runs, redecoded):
            if new is None:
                print(f"skipped {r['dir']}: its metrics.jsonl has no per-epoch '{args.decoding}' decoding",
                      file=sys.stderr)
        runs = [r for r in redecoded if r is not None]
    if not runs:
        print("no finished runs (with the asked decoding) among: " + " ".join(args.runs), file=sys.stderr)
        return 1
    table, groups = summarize(runs, args.pool_commits)
    devices = sorted({run_environment(r["cfg"]).get("device") or "?" for r in runs})
    call = shlex.join(["python", "scripts/summarize.py", *(sys.argv[1:] if argv is None else argv)])
    text = (f"# {args.title}\n\nWritten by `{call}` from {len(runs)} finished runs"
            f"{f' ({skipped} unfinished skipped)' if skipped else ''}"
            f"{f'; epochs chosen as if decoded with --overlap_filter {args.decoding}' if args.decoding else ''}"
            f"; device(s): {', '.join(devices)}; "
            f"code at commit(s) {commits(runs)}; 'other flags' lists flags that differ from today's defaults. "
            "Test F1 is the test score at the epoch with the best dev triplet F1.\n\n" + table + "\n\nRuns: "
            + ", ".join(f"`{r['dir']}`" for r in runs) + "\n")
    if args.plot:
        plot(groups, args.plot)
        text += f"\n![dev and test triplet F1 per epoch]({os.path.relpath(args.plot, os.path.dirname(args.out) or '.')})\n"
    if args.out == "-":
        print(text)
    else:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
