"""Write Results/README.md from the committed run folders and benchmark reports (no number typed by hand).

    bash scripts/reports.sh     # every report in Results/ (summarize.py, eval_decoding.py), then this script

Every section gives the command(s) that made its runs, rebuilt from each run's config.json ('args'): the
flags that differ from today's defaults or from the defaults at the run's own commit. Runs made with other
code than the reference run say so, with their commit. config.json comes in two shapes (older runs:
top-level git_commit/device/versions; current code: an "environment" block); both are read.
"""
from __future__ import annotations

import argparse
import ast
import functools
import glob
import json
import os
import re
import shlex
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aste.evaluator import sentiment_table  # noqa: E402
from aste.runs import BEFORE_FLAG_EXISTED  # noqa: E402
from models.fusion import DEFAULT_HEADS  # noqa: E402
from Parameter import build_parser  # noqa: E402
from scripts.summarize import commit_label, commits, load_run, option_defaults, run_environment, summarize  # noqa: E402

# args that do not change what a run computes (or say what to do with a run), left out of the commands
NOT_IN_COMMAND = {"run_name", "results_dir", "resume", "no_checkpoint", "log_every", "tensorboard", "debug",
                  "save_state_every", "eval_only", "checkpoint", "num_workers", "use_cross_attention", "config"}
# always written, in this order, at the start of a command
FIRST = ("dataset", "pretrained_deberta_name", "epochs", "seed")


# ---------------------------------------------------------------- commands rebuilt from config.json


@functools.cache
def _actions() -> dict:
    return {a.dest: a for a in build_parser()._actions if a.dest != "help"}


def _git(*cmd: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def defaults_at(commit: str | None) -> dict:
    """train.py's flag defaults at a commit, read from that commit's Parameter.py (literal defaults only;
    {} when the commit or file is not available)."""
    if not commit:
        return {}
    res = _git("show", f"{commit}:Parameter.py")
    if res is None or res.returncode:
        return {}
    out = {}
    for node in ast.walk(ast.parse(res.stdout)):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument" and node.args
                and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("--")):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        dest = kw["dest"].value if isinstance(kw.get("dest"), ast.Constant) else node.args[0].value[2:].replace("-", "_")
        if "default" in kw:
            try:
                out[dest] = ast.literal_eval(kw["default"])
            except ValueError:
                pass
        elif isinstance(kw.get("action"), ast.Constant) and kw["action"].value == "store_true":
            out[dest] = False
        else:
            out[dest] = None
    return out


def _same(dest: str, value, default) -> bool:
    if dest == "fusion":  # a run's args hold the resolved fusion; no --fusion means tin
        return (value or "tin") == (default or "tin")
    return value == default


def _render(action: argparse.Action, value) -> list[str]:
    name = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [name if value else "--no-" + name[2:]]
    if action.nargs == 0:  # store_true
        return [name] if value else []
    return [name, f"{value:g}" if isinstance(value, float) else str(value)]


def train_flags(args: dict, commit: str | None = None, skip: tuple = ()) -> list[str]:
    """train.py flags that make a run with these args: FIRST always, then every flag (in the parser's order)
    whose value differs from today's default or from the default at `commit` (the run's own code)."""
    actions, old = _actions(), defaults_at(commit)
    args = {**BEFORE_FLAG_EXISTED, **args}  # a run that predates a flag did what that flag now has to ask for
    resolved = option_defaults(args.get("fusion") or "tin")  # defaults as train.py resolves them
    flags = []
    for dest in FIRST:
        if dest in args and dest not in skip:
            flags += _render(actions[dest], args[dest])
    for dest, action in actions.items():
        if dest in FIRST or dest in NOT_IN_COMMAND or dest in skip or dest not in args:
            continue
        value = args[dest]
        # a literal default of None at the run's commit is resolved at run time (e.g. --fusion_output_block
        # follows the fusion): only today's resolved default says whether the value was asked for
        differs_then = dest in old and old[dest] is not None and not _same(dest, value, old[dest])
        if not _same(dest, value, resolved.get(dest, action.default)) or differs_then:
            flags += _render(action, value)
    return flags


def train_command(run: dict, skip: tuple = ()) -> str:
    return shlex.join(["python", "train.py", *train_flags(run["cfg"]["args"], run_environment(run["cfg"])["commit"],
                                                           skip)])


def commands_block(runs: list[dict]) -> list[str]:
    """A shell block: each run's folder and commit as a comment, then its train.py command."""
    lines = ["```bash"]
    for r in runs:
        lines += [f"# {r['dir']} (commit {commit_label(r['cfg'])})", train_command(r)]
    return lines + ["```"]


# ---------------------------------------------------------------- which code made which runs


def is_ancestor(old: str, new: str) -> bool | None:
    res = _git("merge-base", "--is-ancestor", old, new)
    return None if res is None or res.returncode not in (0, 1) else res.returncode == 0


def code_sentence(runs: list[dict], core: dict, subject: str = "These runs were") -> str:
    """Whether the runs were made with the reference run's code, or older/other code, from their commits."""
    ref = run_environment(core["cfg"])
    ref_label = commit_label(core["cfg"])
    labels = {commit_label(r["cfg"]) for r in runs}
    if labels == {ref_label} and "unknown" not in labels:
        return f"{subject} made with the same code as the reference run (commit `{ref_label}`)."
    shas = {run_environment(r["cfg"])["commit"] for r in runs}
    older = all(s and ref["commit"] and s != ref["commit"] and is_ancestor(s, ref["commit"]) for s in shas)
    text = (f"{subject} made with {'older' if older else 'other'} code than the reference run: commit(s) "
            f"{commits(runs)} (reference run: `{ref_label}`). To rerun one, check out its commit; with later code the "
            "same flags need not give the same numbers.")
    if any(run_environment(r["cfg"])["dirty"] is None for r in runs):
        text += " (Older config.json files do not record uncommitted changes.)"
    return text


def machine(cfg: dict) -> str:
    env = run_environment(cfg)
    parts = [env.get("device") or "unknown device"]
    if env.get("gpu"):
        parts[0] += f" ({env['gpu']}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')})"
    parts += [f"{name} {env[key]}" for key, name in (("torch", "torch"), ("transformers", "transformers"),
                                                      ("python", "Python")) if env.get(key)]
    if env.get("spacy_pipeline"):
        parts.append(f"spaCy {env.get('spacy')} with {env['spacy_pipeline']} {env.get('spacy_pipeline_version')}")
    return ", ".join(parts)


# ---------------------------------------------------------------- tables


def epoch_table(run: dict) -> str:
    cuda = any("peak_cuda_mb" in r for r in run["history"])
    head = ["epoch", "loss", "train s", "dev s", "test s", "dev aspect", "dev opinion", "dev pair", "dev triplet",
            "test aspect", "test opinion", "test pair", "test triplet", "peak RSS MB"] + (["peak CUDA MB"] if cuda else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = run["cfg"]["summary"]["best_epoch"]
    for r in run["history"]:
        mark = " **(best dev)**" if r["epoch"] == best else ""
        cells = [f"{r['epoch']}{mark}", f"{r['loss']:.4f}", f"{r['train_seconds']:.1f}", f"{r['dev_seconds']:.1f}",
                 f"{r['test_seconds']:.1f}"]
        cells += [f"{r[s][k]['f1']:.2f}" for s in ("dev", "test") for k in ("aspect", "opinion", "pair", "triplet")]
        cells.append(f"{r['peak_rss_mb']:.0f}")
        if cuda:
            cells.append(f"{r['peak_cuda_mb']:.0f}" if "peak_cuda_mb" in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_table(runs: list[dict]) -> str:
    """Per seed: best dev epoch, dev triplet F1, test triplet F1/P/R at that epoch; then mean (± sample std)."""
    lines = ["| seed | best dev epoch | dev triplet F1 | test triplet F1 | test triplet P | test triplet R | commit |",
             "|---|---|---|---|---|---|---|"]
    cols = []
    for r in sorted(runs, key=lambda r: r["cfg"]["args"]["seed"]):
        s = r["cfg"]["summary"]
        t = s["test_at_best_dev"]["triplet"]
        values = [s["dev_triplet_f1"], s["test_triplet_f1"], t["p"], t["r"]]
        cols.append(values)
        lines.append(f"| {r['cfg']['args']['seed']} | {s['best_epoch']} | " + " | ".join(f"{v:.2f}" for v in values)
                     + f" | `{commit_label(r['cfg'])}` |")
    n = len(cols)
    cells = []
    for values in zip(*cols):
        cells.append(f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if n > 1 else ""))
    label = f"mean ± sample std ({n} seeds)" if n > 1 else "mean (1 seed: no std)"
    lines.append(f"| {label} | | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def runs_from(patterns: list[str]) -> list[dict]:
    dirs = sorted({d for p in patterns for d in glob.glob(p) if os.path.isdir(d)})
    return [r for r in map(load_run, dirs) if r is not None]


def folders(runs: list[dict]) -> str:
    return "Run folders: " + ", ".join(f"`{r['dir']}` (`{commit_label(r['cfg'])}`)" for r in runs) + "."


# ---------------------------------------------------------------- the sweep's invocation


def sweep_invocation(runs: list[dict]) -> str | None:
    """The scripts/sweep.py call that makes exactly these run folders with these flags, rebuilt from their
    config.json (None if no single call does)."""
    from scripts.sweep import expand, run_name

    per_run, extras = [], set()
    for r in runs:
        a = r["cfg"]["args"]
        fusion = a["fusion"] or "tin"
        heads = a.get("cross_attention_heads") if fusion in DEFAULT_HEADS else None
        per_run.append({"dataset": a["dataset"], "fusion": fusion, "heads": heads,
                        "enhanced": bool(a.get("use_enhanced_semgcn")), "seed": a["seed"], "name": a.get("run_name")})
        flags = train_flags(a, run_environment(r["cfg"])["commit"],
                            skip=("dataset", "fusion", "cross_attention_heads", "use_enhanced_semgcn", "seed"))
        extras.add(tuple(flags))
    if len(extras) != 1 or any(p["fusion"] in DEFAULT_HEADS and p["heads"] is None for p in per_run):
        return None
    prefixes = {p["name"][: -len(run_name("", p))] for p in per_run if p["name"] and p["name"].endswith(run_name("", p))}
    if len(prefixes) != 1:
        return None
    name = prefixes.pop()
    order = ["tin", "tin_no_lstm", "cross_attention", "lightweight"]
    fusions = sorted({p["fusion"] for p in per_run}, key=lambda f: (order.index(f) if f in order else len(order), f))
    grid = {"datasets": sorted({p["dataset"] for p in per_run}), "fusions": fusions,
            "heads": sorted({p["heads"] for p in per_run if p["fusion"] == "cross_attention"}) or [8, 4],
            "lightweight_heads": sorted({p["heads"] for p in per_run if p["fusion"] == "lightweight"})
                                 or [DEFAULT_HEADS["lightweight"]],
            "enhanced": sorted({p["enhanced"] for p in per_run}), "seeds": sorted({p["seed"] for p in per_run})}
    made = sorted((p["dataset"], run_name(name, p)) for p in expand(grid))
    if made != sorted((p["dataset"], p["name"]) for p in per_run):
        return None
    cmd = ["python", "scripts/sweep.py", "--datasets", *grid["datasets"], "--fusions", *grid["fusions"]]
    if "cross_attention" in fusions:
        cmd += ["--heads", *map(str, grid["heads"])]
    if grid["lightweight_heads"] != [DEFAULT_HEADS["lightweight"]]:
        cmd += ["--lightweight_heads", *map(str, grid["lightweight_heads"])]
    if grid["enhanced"] != [False]:
        cmd += ["--enhanced", *(str(int(e)) for e in grid["enhanced"])]
    cmd += ["--seeds", *map(str, grid["seeds"]), "--name", name, "--", *extras.pop()]
    return shlex.join(cmd)


# ---------------------------------------------------------------- the README


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--core", required=True, help="the reference run folder")
    ap.add_argument("--seeds", nargs="*", default=[], help="the reference command over several seeds (globs)")
    ap.add_argument("--comparison", nargs="*", default=[], help="fusion comparison run folders (globs)")
    ap.add_argument("--tuning", nargs="*", default=[], help="runs that chose the defaults on dev (globs)")
    ap.add_argument("--tuning_thresholds", default="Results/14res/tune-lr1e-4-tasklr3e-4",
                    help="run folder holding dev_threshold_*.json from --eval_only")
    ap.add_argument("--extra", nargs="*", default=[], help="other runs to tabulate (globs)")
    ap.add_argument("--sweep", nargs="*", default=[], help="the multi-seed sweep's runs (globs), for its command")
    ap.add_argument("--sweep_summary", default="Results/summary.md")
    ap.add_argument("--benchmarks", default="Results/benchmarks", help="folder of benchmark reports (*.md)")
    ap.add_argument("--reports", nargs="*", default=["Results/decoding.md"],
                    help="reports written by other scripts (e.g. scripts/eval_decoding.py), included whole")
    ap.add_argument("--out", default="Results/README.md")
    args = ap.parse_args(argv)
    core = load_run(args.core)
    if core is None:
        raise SystemExit(f"{args.core} is not a finished run")
    here = os.path.dirname(args.out) or "."
    s = core["cfg"]["summary"]
    best = core["history"][s["best_epoch"] - 1]
    cmd = train_command(core)
    out = [
        "# Results", "",
        "Everything here is written by committed scripts from committed run files "
        "(`scripts/results_readme.py`, `scripts/summarize.py`, `scripts/benchmark_*.py`); no number is typed by hand. "
        "Test F1 is always taken at the epoch with the best **dev** triplet F1, over all test sentences and all gold "
        "triplets. Each section gives the command that makes its runs.", "",
        "This file: `" + shlex.join(["python", "scripts/results_readme.py", *argv]) + "`", "",
        "## Reference run: 14res, offline encoder", "",
        f"`{cmd}` (all other flags at their defaults), at commit `{commit_label(core['cfg'])}`, on "
        f"{machine(core['cfg'])}; run folder `{args.core}` "
        "(`config.json`, `metrics.jsonl`, `test_predictions.jsonl` committed; the checkpoint is not). "
        "Seconds are wall-clock on that machine.", "",
        f"* **best dev epoch {s['best_epoch']}: dev triplet F1 {s['dev_triplet_f1']:.2f}, "
        f"test triplet F1 {s['test_triplet_f1']:.2f}** (entity F1 {s['test_entity_f1']:.2f}; "
        f"{best['test']['triplet']['n_gold']} gold test triplets)",
        f"* best-on-test, for comparison with papers that report it: {s['best_on_test_for_comparison']['test_triplet_f1']:.2f} "
        f"(epoch {s['best_on_test_for_comparison']['epoch']})",
        f"* {s['mean_train_seconds_per_epoch']:.1f} s per training epoch, {s['mean_test_eval_seconds']:.2f} s per "
        f"test-set evaluation (mean over epochs), peak RSS {s['peak_rss_mb']:.0f} MB",
        f"* data report: {json.dumps(core['cfg']['data_report']['notes'])}", "",
        epoch_table(core), "",
        f"Test triplets by sentiment at the best dev epoch ({s['best_epoch']}):", "",
        sentiment_table(best["test"]), "",
    ]

    seeds = runs_from(args.seeds)
    if seeds:
        ref_flags = train_flags(core["cfg"]["args"], skip=("seed",))
        odd = [r["dir"] for r in seeds if train_flags(r["cfg"]["args"], skip=("seed",)) != ref_flags]
        if odd:
            raise SystemExit(f"error: --seeds runs with other flags than the reference run: {', '.join(odd)}")
        out += ["## The reference command over seeds", "",
                "The reference command with only `--seed` changed; test scores at each run's best dev epoch.", "",
                seeds_table(seeds), "", *commands_block(sorted(seeds, key=lambda r: r["cfg"]["args"]["seed"])), ""]

    tuning = runs_from(args.tuning)
    if tuning:
        table, _ = summarize(tuning)
        defaults = option_defaults()
        top = max(tuning, key=lambda r: r["cfg"]["summary"]["dev_triplet_f1"])
        chosen = (top["cfg"]["args"]["lr"], top["cfg"]["args"]["task_lr"]) == (defaults["lr"], defaults["task_lr"])
        threads = {r["cfg"]["args"].get("threads") for r in tuning}
        out += ["## How the learning-rate defaults were chosen (on dev)", "",
                "The reference command with the learning rates shown"
                + (f", `--threads {threads.pop()}` each, run beside one another (their seconds are not timings)"
                   if len(threads) == 1 and None not in threads else "") + ". "
                + code_sentence(tuning, core) + " The working tree also held the change that introduced "
                "today's learning-rate defaults (uncommitted at the time). "
                + (f"Today's defaults (`--lr {defaults['lr']:g} --task_lr {defaults['task_lr']:g}`) are those of the run "
                   f"with the best **dev** triplet F1 (`{os.path.basename(top['dir'])}`); the test column was not looked at "
                   "for the choice." if chosen else
                   f"The run with the best dev triplet F1 is `{os.path.basename(top['dir'])}`; today's defaults are "
                   f"`--lr {defaults['lr']:g} --task_lr {defaults['task_lr']:g}`."), "", table, "",
                *commands_block(tuning), ""]
        thresholds = sorted(glob.glob(os.path.join(args.tuning_thresholds, "dev_threshold_*.json")))
        if thresholds:
            cells = [f"{os.path.basename(p)[len('dev_threshold_'):-5]}: "
                     f"{json.load(open(p, encoding='utf-8'))['metrics']['triplet']['f1']:.2f}" for p in thresholds]
            out += [f"`--sen_filter_threshold` on the checkpoint of `{args.tuning_thresholds}` (`python train.py "
                    "--eval_only --checkpoint RUN --test_file <dev file> --sen_filter_threshold T`, files "
                    "`dev_threshold_T.json` there), dev triplet F1: " + ", ".join(cells) + ". The default "
                    f"{defaults['sen_filter_threshold']:g} was kept.", ""]

    comparison = runs_from(args.comparison)
    if comparison:
        table, _ = summarize(comparison)
        others = [r for r in comparison if os.path.normpath(r["dir"]) != os.path.normpath(args.core)]
        has_core = len(others) < len(comparison)
        out += ["## Fusion modules and the enhanced semantic GCN", "",
                "The reference command with the fusion flags shown; one seed per row. "
                + ("The plain TIN row is the reference run itself. " if has_core else "")
                + (code_sentence(others, core, "The other runs were" if has_core else "These runs were") + " "
                   if others else "")
                + "Seconds come from runs made beside others: see `benchmarks/` for timings.", "", table, "",
                folders(comparison), "", *commands_block(comparison), ""]

    extra = runs_from(args.extra)
    if extra:
        table, _ = summarize(extra)
        epochs = sorted({r["cfg"]["args"]["epochs"] for r in extra})
        seed_set = sorted({r["cfg"]["args"]["seed"] for r in extra})
        out += ["## Other runs", "",
                f"Short runs ({', '.join(map(str, epochs))} epochs, seed {', '.join(map(str, seed_set))}) that compare "
                "one choice each against the TIN run of the multi-seed sweep with the same seed and epochs: all "
                "negative spans and pairs (`--neg_entity_count -1 --neg_triple_count -1`) vs the default 100, and the "
                "raw ASTE files parsed with spaCy (`--data_format aste`) vs the D2E2S JSON. Seconds are from runs made "
                "beside others. " + code_sentence(extra, core), "", table, "", folders(extra), "",
                *commands_block(extra), ""]

    sweep = runs_from(args.sweep)
    if os.path.exists(args.sweep_summary) or sweep:
        out += ["## Multi-seed sweep", ""]
        if os.path.exists(args.sweep_summary):
            out += [f"Table and plot: [{os.path.basename(args.sweep_summary)}]"
                    f"({os.path.relpath(args.sweep_summary, here)}).", ""]
        if sweep:
            call = sweep_invocation(sweep)
            out += [code_sentence(sweep, core), ""]
            if call:
                out += ["The `scripts/sweep.py` call that makes these run folders with these flags (rebuilt from their "
                        "`config.json`; add `--parallel N` to run N at a time). At its end it writes the summary with "
                        "`scripts/summarize.py`.", "", "```bash", call, "```", ""]
            else:
                out += ["No single `scripts/sweep.py` call makes these folders; each run's command:", "",
                        *commands_block(sweep), ""]
            out += [folders(sweep), ""]

    for report in args.reports:
        if os.path.exists(report):
            text = open(report, encoding="utf-8").read().strip().splitlines()
            out += [text[0].replace("# ", "## ", 1), *text[1:], ""]

    bench = sorted(glob.glob(os.path.join(args.benchmarks, "*.md")))
    if bench:
        out += ["## Benchmarks", "", "Each report is written by the script named (its usage is in the script's "
                "docstring); the report's header gives the date, torch version, device and threads, not the commit.", ""]
        for b in bench:
            m = re.search(r"Written by `([^`]+\.py)`", open(b, encoding="utf-8").read())
            out.append(f"* [{os.path.basename(b)}]({os.path.relpath(b, here)})"
                       + (f": `{m.group(1)}`" if m else ""))
        out.append("")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
