"""Summarise finished runs: mean +- std over seeds per configuration (every flag that changes what a run
computes), with test scores at the best-dev epoch, and per-epoch F1 curves.

    python scripts/summarize.py "Results/14res/sweep-*" --out Results/summary.md --plot Results/summary.png
The tables in Results/ name their own commands (e.g. --decoding none spans triplets compares decodings).
"""
import argparse
import functools
import glob
import gzip
import json
import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aste.runs import RESUME_FREE, RunFolder, saved_flag  # noqa: E402
from Parameter import parse_args  # noqa: E402

# flags that do not change what is computed; --threads does (float sums in another order: a seed moves)
IGNORED = (RESUME_FREE - {"threads"}) | {"seed", "no_checkpoint", "eval_only", "checkpoint"}


def load_run(run_dir: str) -> dict | None:
    """A run's config and per-epoch records (metrics.jsonl, or its archived .gz); None if it has none."""
    path = RunFolder(run_dir).history_file()
    if path is None:
        return None
    try:
        cfg = json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8"))
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            history = [json.loads(x) for x in f if x.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    return {"dir": run_dir, "cfg": cfg, "history": history}


def decoding(text: str) -> str:
    """A --decoding value: an --overlap_filter option, or sen_filter_threshold=T (T written as runs record it)."""
    flag, _, value = text.rpartition("=")
    return f"{flag}={float(value):g}" if flag == "sen_filter_threshold" else text


def as_decoding(run: dict, decoding: str) -> dict | None:
    """The run as if decoded this way: each epoch's metrics under it (metrics.jsonl's "decodings"), the epoch chosen
    again on dev among those it ran (--patience, judged under its own decoding, may have ended it). Else None."""
    args, (flag, _, value) = run["cfg"]["args"], decoding.rpartition("=")
    flag, value = (flag, float(value)) if flag == "sen_filter_threshold" else ("overlap_filter", decoding)
    if saved_flag(args, flag, option_defaults()[flag]) == value:
        return run | {"decoding": decoding}
    if not all(decoding in r.get("decodings", {}) for r in run["history"]):
        return None
    history = [r | {s: r[s] | r["decodings"][decoding][s] for s in ("dev", "test")} for r in run["history"]]
    return chosen_again(run | {"cfg": run["cfg"] | {"args": args | {flag: value}}, "decoding": decoding}, history)


def upto(run: dict, epochs: int) -> dict | None:
    """The run as if it had stopped after `epochs` epochs (a screen on a short budget, finished or not), its
    best epoch chosen again on dev among them. None if it has not run that far."""
    history = run["history"][:epochs]
    if len(history) < epochs:
        return None
    return chosen_again(run, history, mean_train_seconds_per_epoch=statistics.mean(r["train_seconds"] for r in history),
                        mean_test_eval_seconds=statistics.mean(r["test_seconds"] for r in history),
                        peak_rss_mb=max(r["peak_rss_mb"] for r in history))


def chosen_again(run: dict, history: list[dict], **summary) -> dict:
    """The run with these per-epoch records, its best epoch chosen on dev among them (the first best, as in
    training)."""
    best = max(history, key=lambda r: (r["dev"]["triplet"]["f1"], -r["epoch"]))
    summary |= {"best_epoch": best["epoch"], "dev_triplet_f1": best["dev"]["triplet"]["f1"],
                "test_triplet_f1": best["test"]["triplet"]["f1"], "test_entity_f1": best["test"]["entity"]["f1"]}
    return run | {"cfg": run["cfg"] | {"summary": run["cfg"].get("summary", {}) | summary}, "history": history}


def config_key(args: dict) -> tuple:
    """What a run computed: every flag that matters, with what a run did for flags it predates."""
    defaults = option_defaults(args.get("fusion") or "tin")
    return tuple(sorted((k, json.dumps(saved_flag(args, k, default))) for k, default in defaults.items()
                        if k not in IGNORED and not k.endswith("_file")))


# columns of their own, or flags that do not change what is computed
NOT_OPTIONS = IGNORED | {"dataset", "fusion", "use_cross_attention", "cross_attention_heads", "use_enhanced_semgcn",
                         "epochs", "pretrained_deberta_name", "deberta_feature_dim", "emb_dim"}


@functools.cache
def option_defaults(fusion: str = "tin") -> dict:
    """Every flag's default as train.py resolves it for this fusion (some defaults depend on it)."""
    return vars(parse_args(["--fusion", fusion]))


def non_default_options(args: dict) -> str:
    """The flags that change results and differ from today's defaults, e.g. data_format=aste (0 or False
    for a flag that defaults to None for this fusion, an option it does not take, is no difference)."""
    defaults = option_defaults(args.get("fusion") or "tin")
    diff = [f"{k}={saved_flag(args, k, v)}" for k, v in defaults.items() if k not in NOT_OPTIONS
            and saved_flag(args, k, v) != v and not (v is None and saved_flag(args, k, v) in (0, False))]
    return ", ".join(diff) or "defaults"


def describe(cfg: dict) -> dict:
    """A run's table columns; its attention heads from its model config (resolved), else from its flag."""
    args = cfg["args"]
    heads = cfg.get("model", {}).get("cross_attention_heads", args.get("cross_attention_heads")) or "-"
    return {"dataset": args["dataset"], "fusion": args["fusion"], "heads": heads,
            "enh. SemGCN": "yes" if args.get("use_enhanced_semgcn") else "no", "epochs": args["epochs"],
            "encoder": os.path.basename(os.path.normpath(args["pretrained_deberta_name"])),
            "options": non_default_options(args)}


def run_environment(cfg: dict) -> dict:
    """Commit, dirty, device and versions: config.json's "environment", or older runs' top-level keys."""
    old = {"commit": cfg.get("git_commit"), "device": cfg.get("device"), **cfg.get("versions", {})}
    return {"commit": None, "dirty": None} | cfg.get("environment", old)


def commit_label(cfg: dict) -> str:
    """Short commit of a run's code, '<sha>+dirty' for uncommitted changes, 'unknown' if not recorded."""
    env = run_environment(cfg)
    return env["commit"][:7] + ("+dirty" if env["dirty"] else "") if env["commit"] else "unknown"


def commits(runs: list[dict]) -> str:
    return ", ".join(f"`{c}`" for c in sorted({commit_label(r["cfg"]) for r in runs}))


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def summarize(runs: list[dict], pool_commits: bool = False) -> tuple[str, dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        # the same flags at two commits are two measurements unless pool_commits (the code column lists them)
        groups.setdefault((config_key(r["cfg"]["args"]), None if pool_commits else commit_label(r["cfg"])), []).append(r)
    lines = ["| dataset | encoder | fusion | heads | enh. SemGCN | other flags | epochs | seeds | test triplet F1 "
             "(dev-selected) | test triplet P / R | test triplet F1 (P / R) per seed | test entity F1 | dev triplet F1 | "
             "best epochs | s / train epoch | s / test eval | peak RSS MB | code |", "|" + "---|" * 18]
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(describe(kv[1][0]["cfg"]).values())):
        d = describe(rs[0]["cfg"])
        sm = [r["cfg"]["summary"] for r in rs]
        best_test = [r["history"][s["best_epoch"] - 1]["test"]["triplet"] for r, s in zip(rs, sm)]
        lines.append("| " + " | ".join([
            d["dataset"], d["encoder"], d["fusion"], str(d["heads"]), d["enh. SemGCN"], d["options"], str(d["epochs"]),
            ", ".join(str(r["cfg"]["args"]["seed"]) for r in rs), mean_std([s["test_triplet_f1"] for s in sm]),
            f"{statistics.mean(t['p'] for t in best_test):.2f} / {statistics.mean(t['r'] for t in best_test):.2f}",
            ", ".join(f"{r['cfg']['args']['seed']}: {s['test_triplet_f1']:.2f} ({t['p']:.2f} / {t['r']:.2f})"
                      for r, s, t in zip(rs, sm, best_test)),
            mean_std([s["test_entity_f1"] for s in sm]),
            mean_std([s["dev_triplet_f1"] for s in sm]), ", ".join(str(s["best_epoch"]) for s in sm),
            f"{statistics.mean(s['mean_train_seconds_per_epoch'] for s in sm):.1f}",
            f"{statistics.mean(s['mean_test_eval_seconds'] for s in sm):.2f}",
            f"{max(s['peak_rss_mb'] for s in sm):.0f}", commits(rs)]) + " |")
    return "\n".join(lines), groups


def pooled_by_decoding(groups: dict, decodings: list[str]) -> str:
    """Each decoding's dev and test triplet F1 averaged over the configurations, and in how many it is best on dev."""
    means: dict[tuple, dict[str, tuple[float, float]]] = {}  # configuration -> decoding -> (dev F1, test F1)
    flags = {d.rpartition("=")[0] or "overlap_filter" for d in decodings}
    for (key, commit), rs in groups.items():
        config = (tuple(kv for kv in key if kv[0] not in flags), commit)
        means.setdefault(config, {})[rs[0]["decoding"]] = tuple(
            statistics.mean(r["cfg"]["summary"][f"{split}_triplet_f1"] for r in rs) for split in ("dev", "test"))
    full = [m for m in means.values() if set(m) == set(decodings)]  # configurations seen with every decoding
    lines = [f"Pooled over the {len(full)} configurations above (mean of the configuration means):", "",
             "| decoding | dev triplet F1 | test triplet F1 | best on dev in |", "|---|---|---|---|"]
    for d in decodings:
        wins = sum(max(decodings, key=lambda o: m[o][0]) == d for m in full)
        lines.append(f"| {d} | {statistics.mean(m[d][0] for m in full):.2f} | "
                     f"{statistics.mean(m[d][1] for m in full):.2f} | {wins} of {len(full)} |")
    return "\n".join(lines)


def plot(groups: dict, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    for i, (key, rs) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        d = describe(rs[0]["cfg"])
        label = f"{d['dataset']} {d['fusion']}" + (f" h{d['heads']}" if d["heads"] != "-" else "") + \
                (" +enh" if d["enh. SemGCN"] == "yes" else "") + f", {d['epochs']} epochs (n={len(rs)})"
        for ax, split in zip(axes, ("dev", "test")):
            epochs = sorted({r["epoch"] for run in rs for r in run["history"]})
            per_epoch = [[run["history"][e - 1][split]["triplet"]["f1"] for run in rs if len(run["history"]) >= e]
                         for e in epochs]
            mean = [statistics.mean(v) for v in per_epoch]
            ax.plot(epochs, mean, color=f"C{i % 10}", label=label)
            if len(rs) > 1:
                sd = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_epoch]
                ax.fill_between(epochs, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                                color=f"C{i % 10}", alpha=0.15)
    for ax, split in zip(axes, ("dev", "test")):
        ax.set(title=f"{split} triplet F1 per epoch (mean ± std over seeds)", xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("triplet F1")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80, pil_kwargs={"optimize": True})  # small: Results/ is kept under 8 MB


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders (globs allowed)")
    ap.add_argument("--out", default="Results/summary.md", help="markdown file, or - for stdout")
    ap.add_argument("--plot", default=None, help="PNG of dev/test triplet F1 per epoch")
    ap.add_argument("--title", default="Summary of runs")
    ap.add_argument("--pool_commits", action="store_true",
                    help="group runs with the same flags made at commits that compute the same thing")
    ap.add_argument("--decoding", nargs="+", default=None, metavar="DECODING", type=decoding,
                    help="choose each run's best epoch as if decoded this way: an --overlap_filter option, or "
                         "sen_filter_threshold=T; with several, a row per decoding and a table comparing them")
    ap.add_argument("--upto", type=int, default=None, metavar="EPOCHS",
                    help="every run (finished or not) as if stopped after EPOCHS epochs, its best epoch chosen "
                         "on dev among them: a learning-rate screen on a short budget")
    args = ap.parse_args(argv)
    dirs = sorted({d for pattern in args.runs for d in (glob.glob(pattern) or [pattern]) if os.path.isdir(d)})
    runs = [r for r in map(load_run, dirs) if r is not None]
    runs = [r for r in runs if "summary" in r["cfg"]] if args.upto is None else \
        [r for r in (upto(r, args.upto) for r in runs) if r is not None]
    skipped = len(dirs) - len(runs)
    if len({d.rpartition("=")[0] for d in args.decoding or []}) > 1:  # its pooled table compares one flag
        ap.error("--decoding: give --overlap_filter options or thresholds, not both")
    if args.decoding:  # each run once per decoding
        decoded = [(r, d, as_decoding(r, d)) for d in args.decoding for r in runs]
        for r, d, new in decoded:
            if new is None:
                print(f"skipped {r['dir']}: its metrics.jsonl has no per-epoch '{d}' decoding", file=sys.stderr)
        runs = [new for _, _, new in decoded if new is not None]
    if not runs:
        print("no finished runs (with the asked decoding or epochs) among: " + " ".join(args.runs), file=sys.stderr)
        return 1
    table, groups = summarize(runs, args.pool_commits)
    if args.decoding and len(args.decoding) > 1:
        table += "\n\n" + pooled_by_decoding(groups, args.decoding)
    dirs = sorted({r["dir"] for r in runs})
    devices = sorted({run_environment(r["cfg"]).get("device") or "?" for r in runs})
    call = shlex.join(["python", "scripts/summarize.py", *(sys.argv[1:] if argv is None else argv)])
    how = (f"; each run under each decoding ({', '.join(args.decoding)}), its epoch chosen on dev under each"
           if args.decoding else "")
    text = (f"# {args.title}\n\nWritten by `{call}` from {len(dirs)} "
            f"{'finished runs' if args.upto is None else f'runs, each as if stopped after epoch {args.upto}'}"
            f"{f' ({skipped} unfinished or shorter skipped)' if skipped else ''}{how}; "
            f"device(s): {', '.join(devices)}; code at commit(s) {commits(runs)}; "
            "'other flags' lists flags that differ from today's defaults. Test F1 is the test score at the epoch "
            "with the best dev triplet F1.\n\n" + table + "\n\nRuns: " + ", ".join(f"`{d}`" for d in dirs) + "\n")
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
