"""Write Results/README.md from the committed run folders and benchmark reports (no number typed by hand).

    python scripts/results_readme.py --core Results/14res/all-minilm-l6-v2-tin-seed42 --tuning "Results/14res/tune-*" \
        --comparison Results/14res/all-minilm-l6-v2-tin-seed42 "Results/14res/cmp-*" \
        --extra "Results/14res/negall-*" "Results/14res/aste-*" Results/14res/sweep3ep-tin-seed42 \
        --codecheck 0.2.1 --codecheck_before "Results/14res/codecheck-8b562f1-*" "Results/14res/codecheck-f2485a5-*" \
        --codecheck_after "Results/14res/codecheck-7097bf9-*" "Results/14res/codecheck-bea4abd-*" \
        --codecheck 0.2.2 --codecheck_before "Results/14res/codecheck-7097bf9-*" "Results/14res/codecheck-bea4abd-*" \
        --codecheck_after "Results/14res/codecheck-f768416-*" \
        --codecheck 0.2.3 --codecheck_before Results/14res/codecheck-f768416-tin-seed42 \
        --codecheck_after Results/14res/codecheck-436ce2c-tin-seed42 \
        --codecheck 0.2.4 --codecheck_before Results/14res/codecheck-436ce2c-tin-seed42 \
        --codecheck_after Results/14res/all-minilm-l6-v2-tin-seed42 \
        --long Results/14res/memory-20ep-b750627 "Results/14res/full120-*" --long_note "$(cat Results/long_runs_note.txt)"
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aste.evaluator import sentiment_table  # noqa: E402
from scripts.summarize import commits, load_run, option_defaults, summarize  # noqa: E402


# What each checked release changed, for its section of "Same model, two code versions"
CODE_CHANGES = {
    "0.2.1": ("The span pooling's backward pass: the same function with a different summation order (in float64 "
              "the whole model's gradients agree with the old formulation, "
              "`tests/test_modules.py::test_model_gradients_with_fast_and_naive_span_pooling_agree`), so the "
              "differences are rounding differences. The 'before' runs of seeds 1 and 2 ran in a git worktree "
              "at the commit their folder names give, which that version's `config.json` could not read "
              "(`unknown`; fixed in 0.2.1)."),
    "0.2.2": ("The CPU dropout mask (`models/dropout.py`): the same drop probability and scaling, drawn from "
              "other random bits, so every dropout mask differs from the first step on; the encoder's attention "
              "under dropout is now written out (scores, softmax, mask, matmul), which also rounds slightly "
              "differently from torch's own math path. The differences are those between two draws of the "
              "same training randomness."),
    "0.2.3": ("Host memory only: the heap is trimmed just before and after the largest batches of each CPU "
              "epoch, and a parse-cache hit no longer imports spaCy. No arithmetic changes, so the same command "
              "must give the same numbers (and the same training loss at every epoch, in `metrics.jsonl`)."),
    "0.2.4": ("Activation memory only: the encoder's feed-forward activation output and its dropped-out "
              "attention probabilities are rebuilt in the backward pass from tensors the graph keeps anyway, "
              "instead of being kept (`models/recompute.py`; gradients bit-identical in "
              "`tests/test_recompute.py`). The same command must give the same numbers."),
}


def epoch_table(run: dict) -> str:
    lines = ["| epoch | loss | train s | dev s | test s | dev aspect | dev opinion | dev pair | dev triplet | "
             "test aspect | test opinion | test pair | test triplet | peak RSS MB |", "|" + "---|" * 14]
    best = run["cfg"]["summary"]["best_epoch"]
    for r in run["history"]:
        mark = " **(best dev)**" if r["epoch"] == best else ""
        cells = [f"{r['epoch']}{mark}", f"{r['loss']:.4f}", f"{r['train_seconds']:.1f}", f"{r['dev_seconds']:.1f}",
                 f"{r['test_seconds']:.1f}"]
        cells += [f"{r[s][k]['f1']:.2f}" for s in ("dev", "test") for k in ("aspect", "opinion", "pair", "triplet")]
        cells.append(f"{r['peak_rss_mb']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def codecheck_table(before: list[dict], after: list[dict]) -> list[str]:
    """Dev and test triplet F1 (and the run's peak RSS) per seed, code before vs after a change, with the
    means over seeds run with both."""
    old = {r["cfg"]["args"]["seed"]: r["cfg"]["summary"] for r in before}
    new = {r["cfg"]["args"]["seed"]: r["cfg"]["summary"] for r in after}
    lines = [f"| seed | before ({commits(before)}) dev | before test | after ({commits(after)}) dev | after test | "
             "test difference | peak RSS MB before | after |", "|---|---|---|---|---|---|---|---|"]
    both = sorted(set(old) & set(new))
    for seed in both:
        o, n = old[seed], new[seed]
        lines.append(f"| {seed} | {o['dev_triplet_f1']:.2f} | {o['test_triplet_f1']:.2f} | {n['dev_triplet_f1']:.2f} | "
                     f"{n['test_triplet_f1']:.2f} | {n['test_triplet_f1'] - o['test_triplet_f1']:+.2f} | "
                     f"{o['peak_rss_mb']:.0f} | {n['peak_rss_mb']:.0f} |")
    if len(both) > 1:
        def mean(runs, key):
            return sum(runs[s][key] for s in both) / len(both)
        lines.append(f"| mean of {len(both)} | {mean(old, 'dev_triplet_f1'):.2f} | {mean(old, 'test_triplet_f1'):.2f} | "
                     f"{mean(new, 'dev_triplet_f1'):.2f} | {mean(new, 'test_triplet_f1'):.2f} | "
                     f"{mean(new, 'test_triplet_f1') - mean(old, 'test_triplet_f1'):+.2f} | | |")
    losses = {r["cfg"]["args"]["seed"]: [h["loss"] for h in r["history"]] for r in before}
    same = sorted({seed for seed in both for r in after if r["cfg"]["args"]["seed"] == seed
                   and [h["loss"] for h in r["history"]] == losses[seed]})
    lines += ["", f"Seeds whose training loss is identical at every epoch (`metrics.jsonl`): "
                  f"{', '.join(map(str, same)) if same else 'none'}."]
    return lines


MILESTONES = (1, 2, 5, 10, 20, 30, 40, 60, 80, 100, 120, 150, 200)


def peak_by_epoch_table(runs: list[dict]) -> str:
    """Peak RSS so far (the process's peak up to and including that epoch) at milestone epochs, one
    column per run; the last row is each run's whole-run peak."""
    longest = max(len(r["history"]) for r in runs)
    epochs = [e for e in MILESTONES if e <= longest]
    if longest not in epochs:
        epochs.append(longest)
    head = "| epoch | " + " | ".join(f"`{os.path.basename(r['dir'])}` ({commits([r])})" for r in runs) + " |"
    lines = [head, "|" + "---|" * (len(runs) + 1)]
    by_epoch = [{h["epoch"]: h for h in r["history"]} for r in runs]
    for e in epochs:
        cells = [f"{h[e]['peak_rss_mb']:.0f}" if e in h else "" for h in by_epoch]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines.append("| whole run | " + " | ".join(f"**{r['cfg']['summary']['peak_rss_mb']:.0f}**" for r in runs) + " |")
    return "\n".join(lines)


def runs_section(title: str, prose: str, runs: list[dict], *tables: str) -> list[str]:
    """A section: prose, the given tables, the summary table of the runs, and their folders."""
    summary, _ = summarize(runs)
    return ([f"## {title}", "", prose, ""] + [line for t in tables for line in (t, "")]
            + [summary, "", "Run folders: " + ", ".join(f"`{r['dir']}`" for r in runs), ""])


def runs_from(patterns: list[str]) -> list[dict]:
    dirs = sorted({d for p in patterns for d in glob.glob(p) if os.path.isdir(d)})
    return [r for r in map(load_run, dirs) if r is not None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--core", required=True, help="the reference run folder")
    ap.add_argument("--comparison", nargs="*", default=[], help="fusion comparison run folders (globs)")
    ap.add_argument("--tuning", nargs="*", default=[], help="runs that chose the defaults on dev (globs)")
    ap.add_argument("--tuning_thresholds", default="Results/14res/tune-lr1e-4-tasklr3e-4",
                    help="run folder holding dev_threshold_*.json from --eval_only")
    ap.add_argument("--extra", nargs="*", default=[], help="other runs to tabulate (globs)")
    ap.add_argument("--codecheck", action="append", default=[], choices=sorted(CODE_CHANGES),
                    help="a release whose code change is checked: one section per --codecheck, in order")
    ap.add_argument("--codecheck_before", nargs="+", action="append", default=[],
                    help="runs with the code before that release (globs; once per --codecheck)")
    ap.add_argument("--codecheck_after", nargs="+", action="append", default=[],
                    help="the same commands with the release's code (globs; once per --codecheck)")
    ap.add_argument("--long", nargs="*", default=[],
                    help="runs of the reference command for more epochs: peak memory by epoch (globs)")
    ap.add_argument("--long_note", default="",
                    help="what else ran on the machine during the --long runs (their seconds)")
    ap.add_argument("--sweep_summary", default="Results/summary.md")
    ap.add_argument("--out", default="Results/README.md")
    args = ap.parse_args(argv)
    core = load_run(args.core)
    if core is None:
        raise SystemExit(f"{args.core} is not a finished run")
    s, a = core["cfg"]["summary"], core["cfg"]["args"]
    best = core["history"][s["best_epoch"] - 1]
    cmd = (f"python train.py --dataset {a['dataset']} --pretrained_deberta_name {a['pretrained_deberta_name']} "
           f"--epochs {a['epochs']} --seed {a['seed']}")
    out = [
        "# Results", "",
        "Everything here is written by committed scripts from committed run files "
        "(`scripts/results_readme.py`, `scripts/summarize.py`, `scripts/benchmark_*.py`); no number is typed by hand. "
        "Test F1 is always taken at the epoch with the best **dev** triplet F1, over all test sentences and all gold "
        "triplets.", "",
        "## Reference run: 14res, offline encoder", "",
        f"`{cmd}` (README flags otherwise), on {core['cfg']['device']} "
        f"(2-core CPU machine, torch {core['cfg']['versions']['torch']}), alone on the machine, at commit "
        f"{commits([core])}; run folder `{args.core}` "
        "(`config.json`, `metrics.jsonl`, `test_predictions.jsonl` committed; the checkpoint is not).", "",
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
    tuning = runs_from(args.tuning)
    if tuning:
        table, _ = summarize(tuning)
        defaults = option_defaults()
        out += ["## How the learning-rate defaults were chosen (on dev)", "",
                "14res, TIN, seed 42, 10 epochs, the reference command with the flags shown; run two at a time "
                f"with one thread each (their seconds are not comparable), at commit {commits(tuning)} plus the "
                "working-tree change that introduced them (release 0.2.0; the reference run above is the same model "
                "made with later code, whose rounding and dropout masks differ: see \"Same model, two code versions\"). "
                "The defaults "
                f"(`--lr {defaults['lr']:g} --task_lr {defaults['task_lr']:g}`) are the row with the best **dev** triplet F1; the test column was "
                "not looked at for the choice.", "", table, ""]
        thresholds = sorted(glob.glob(os.path.join(args.tuning_thresholds, "dev_threshold_*.json")))
        if thresholds:
            cells = [f"{os.path.basename(p)[len('dev_threshold_'):-5]}: "
                     f"{json.load(open(p, encoding='utf-8'))['metrics']['triplet']['f1']:.2f}" for p in thresholds]
            out += [f"`--sen_filter_threshold` on the checkpoint of `{args.tuning_thresholds}` (`train.py --eval_only "
                    "--checkpoint RUN --test_file <dev file> --sen_filter_threshold T`, files `dev_threshold_T.json` "
                    "there), dev triplet F1: " + ", ".join(cells) + f". The default "
                    f"{defaults['sen_filter_threshold']:g} was kept.", ""]
    comparison = runs_from(args.comparison)
    if comparison:
        table, _ = summarize(comparison)
        out += ["## Fusion modules and the enhanced semantic GCN (14res, offline encoder, seed 42)", "",
                "Same seed and epochs as the reference run. The plain TIN row is the reference run itself (alone "
                "on both cores; the same model made with later code, whose rounding and dropout masks differ, see below); the other runs were made two or three at a time with one thread each, so their "
                "seconds are not comparable with it nor with each other: see `benchmarks/` for timings taken "
                f"alone. One seed per cell. Commit(s): {commits(comparison)}.", "", table, ""]
    extra = runs_from(args.extra)
    if extra:
        out += runs_section(
            "Other runs",
            "Short runs (3 epochs, seed 42) that compare one choice each against the 3-epoch TIN runs of the "
            "multi-seed sweep below (same seed, epochs and flags otherwise): all negative spans and pairs "
            "(`--neg_entity_count -1 --neg_triple_count -1`) vs the default 100, and the raw ASTE files parsed "
            "with spaCy (`--data_format aste`) vs the D2E2S JSON. Seconds are from runs made beside others. "
            f"Made with release 0.1.0 (commit(s) {commits(extra)}: its learning rates, shown under other flags, "
            "and its packed-sequence LSTM, which computes the same function).", extra)
    long_runs = runs_from(args.long)
    if long_runs:
        out += runs_section(
            "Peak memory over long runs",
            "The reference command with more epochs (the other flags in the table). Peak RSS is the training "
            "process's peak so far (getrusage), read after each epoch's evaluation; MB = 2^20 bytes. "
            + args.long_note, long_runs, peak_by_epoch_table(long_runs))
    if not len(args.codecheck) == len(args.codecheck_before) == len(args.codecheck_after):
        raise SystemExit("error: give --codecheck_before and --codecheck_after once per --codecheck")
    if args.codecheck:
        out += ["## Same model, two code versions: how far one seed moves", "",
                "The reference command (14res, TIN, 10 epochs) with the code before and after a change, seed by seed. "
                "Each seed's two runs were made with the same thread count (seed 42: the reference runs, alone, "
                "2 threads; others: one thread each, two runs side by side). Runs are deterministic on CPU, so each "
                "difference below comes from the change alone, amplified over "
                f"{core['cfg']['args']['epochs']} epochs of updates: the spread any single-seed comparison carries. "
                "A seed-42 'before' folder holds the files of the earlier reference run (same command), copied "
                "unchanged from git history.", ""]
    for release, before_globs, after_globs in zip(args.codecheck, args.codecheck_before, args.codecheck_after):
        before, after = runs_from(before_globs), runs_from(after_globs)
        out += [f"### Release {release}", "", CODE_CHANGES[release], "", *codecheck_table(before, after), "",
                "Run folders: " + ", ".join(f"`{r['dir']}`" for r in before + after) + ".", ""]
    if os.path.exists(args.sweep_summary):
        out += ["## Multi-seed sweep", "", f"See [{os.path.basename(args.sweep_summary)}]"
                f"({os.path.relpath(args.sweep_summary, os.path.dirname(args.out))}).", ""]
    bench = sorted(glob.glob(os.path.join(os.path.dirname(args.out), "benchmarks", "*.md")))
    if bench:
        out += ["## Benchmarks", ""] + [f"* [{os.path.basename(b)}]({os.path.relpath(b, os.path.dirname(args.out))})"
                                         for b in bench] + [""]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
