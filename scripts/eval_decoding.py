"""Choose a decoding option on dev: re-evaluate saved runs (their best-dev checkpoints) on dev and
test under each --overlap_filter and write the table, means over the runs' seeds.

    python scripts/eval_decoding.py "Results/14res/all-minilm-l6-v2-tin-seed*" "Results/14res/hnbd-tin-seed*"

Besides F1, precision and recall, it counts "nested" test predictions: predicted triplets whose
opinion (aspect) span overlaps the opinion (aspect) span of another predicted triplet with the same
aspect (opinion), e.g. "bread / top notch" beside "bread / top". The checkpoints need to be there
(best.safetensors is never committed): run it where the runs were trained. Each run's results are
kept in its folder (decoding_eval.json, committed with the run), so a later call with more groups
only evaluates the new runs.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from aste.atomic import write_json  # noqa: E402
from aste.data import load_split, make_dataset, make_loader  # noqa: E402
from aste.encoding import encoder_max_length  # noqa: E402
from aste.input_reader import ReadReport  # noqa: E402
from aste.runs import load_run, saved_flag  # noqa: E402
from aste.trainer import evaluate_decodings  # noqa: E402
from models.decoding import OVERLAP_FILTERS as OPTIONS, triplet_overlap_losers  # noqa: E402
from Parameter import build_parser  # noqa: E402
from scripts.bench_utils import write_report  # noqa: E402

def nested_count(evaluator) -> int:
    """Predicted triplets that a 'triplets' filter would compare: same aspect with overlapping
    opinions, or same opinion with overlapping aspects (each triplet counted once)."""
    total = 0
    for sid, pred in evaluator.per_sentence.items():
        trips = pred["triplets"]
        if len(trips) < 2:
            continue
        spans = sorted({(a0, a1) for a0, a1, *_ in trips} | {(o0, o1) for _, _, o0, o1, *_ in trips})
        index = {s: k for k, s in enumerate(spans)}
        span_t = torch.tensor([[0, s, e] for s, e in spans])
        pairs = torch.tensor([[index[(t[0], t[1])], index[(t[2], t[3])]] for t in trips])
        # every triplet that has a conflicting partner: losers under ascending and under descending scores
        up = triplet_overlap_losers(span_t, pairs, torch.arange(len(trips), dtype=torch.float))
        down = triplet_overlap_losers(span_t, pairs, -torch.arange(len(trips), dtype=torch.float))
        total += int((up | down).sum())
    return total


CACHE = "decoding_eval.json"  # in the run folder: the results below, for the checkpoint they were made from


def evaluate_run(run_dir: str) -> dict[str, dict]:
    """{option: {"seed", "dev", "test" (triplet P/R/F1), "nested"}} for one run's checkpoint; read from
    the run folder's decoding_eval.json when that was made from the same checkpoint."""
    stamp = {"best_safetensors_bytes": os.path.getsize(os.path.join(run_dir, "best.safetensors")),
             "best_epoch": json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8"))["summary"]["best_epoch"]}
    cache = os.path.join(run_dir, CACHE)
    if os.path.isfile(cache):
        with open(cache, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("checkpoint") == stamp and set(cached.get("options", {})) == set(OPTIONS):
            return cached["options"]
    model, tokenizer, cfg = load_run(run_dir, "cpu")
    defaults = vars(build_parser().parse_args([]))
    saved = argparse.Namespace(**{k: saved_flag(cfg["args"], k, v) for k, v in defaults.items()})
    data = {}
    for split in ("dev", "test"):
        report = ReadReport()
        data[split] = make_dataset(load_split(cfg["data"][split]["file"], saved, report), tokenizer, saved, False,
                                   report, encoder_max_length(tokenizer, model.encoder.config))
    evaluators = {split: evaluate_decodings(model, make_loader(data[split], saved, False, torch.device("cpu")),
                                            saved.sen_filter_threshold, saved.max_pairs, torch.device("cpu"),
                                            desc=split, overlaps=OPTIONS)
                  for split in ("dev", "test")}
    results = {}
    for option in OPTIONS:
        result = {"seed": saved.seed, "dev": evaluators["dev"][option].metrics()["triplet"],
                  "test": evaluators["test"][option].metrics()["triplet"],
                  "nested": nested_count(evaluators["test"][option])}
        results[option] = result
        print(f"{run_dir} {option}: dev {result['dev']['f1']:.2f} test {result['test']['f1']:.2f} "
              f"nested {result['nested']}", flush=True)
    write_json({"checkpoint": stamp, "options": results}, cache)
    return results


def pooled_table(group_means: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Markdown lines: each option's dev and test F1 averaged over the groups (each group, e.g. one dataset
    and fusion, weighs the same however many seeds it has), and in how many groups it is best on dev."""
    wins = {o: 0 for o in OPTIONS}
    for means in group_means.values():
        wins[max(OPTIONS, key=lambda o: means[o]["dev"])] += 1
    lines = [f"Pooled over the {len(group_means)} groups above (mean of the group means):", "",
             "| --overlap_filter | dev triplet F1 | test triplet F1 | groups where best on dev |", "|---|---|---|---|"]
    for o in OPTIONS:
        dev = statistics.mean(m[o]["dev"] for m in group_means.values())
        test = statistics.mean(m[o]["test"] for m in group_means.values())
        lines.append(f"| {o} | {dev:.2f} | {test:.2f} | {wins[o]} of {len(group_means)} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("groups", nargs="+", help="one glob of run folders (with best.safetensors) per group, e.g. the "
                                               "seeds of one configuration")
    ap.add_argument("--out", default="Results/decoding.md")
    args = ap.parse_args(argv)
    lines = ["# Decoding: overlapping spans and triplets", "",
             f"Written by `python scripts/eval_decoding.py {' '.join(shlex.quote(g) for g in args.groups)}` on "
             f"{time.strftime('%Y-%m-%d')} (CPU, torch {torch.__version__}): each run's best-dev checkpoint (chosen "
             "during training with the decoding its config names) re-evaluated under each `--overlap_filter`. "
             "Choose on the dev columns; test is shown at the same option. Means over each group's runs (seeds). "
             "Nested: test triplets that share one span with another predicted triplet and overlap it in the "
             "other (both of a pair are counted).", "",
             "| runs | --overlap_filter | dev triplet F1 | test triplet F1 | test P | test R | nested test predictions | "
             "per seed (dev / test) |", "|---|---|---|---|---|---|---|---|"]
    group_means = {}
    for group in args.groups:
        dirs = sorted(d for d in glob.glob(group) if os.path.isfile(os.path.join(d, "best.safetensors")))
        if not dirs:
            raise SystemExit(f"error: no run folder with best.safetensors matches {group}")
        rows = {o: [] for o in OPTIONS}
        for run_dir in dirs:
            for option, result in evaluate_run(run_dir).items():
                rows[option].append(result)

        def mean(option, split, key):
            return statistics.mean(r[split][key] for r in rows[option])
        group_means[group] = {o: {s: mean(o, s, "f1") for s in ("dev", "test")} for o in OPTIONS}
        for option in OPTIONS:
            per_seed = ", ".join(f"{r['seed']}: {r['dev']['f1']:.2f} / {r['test']['f1']:.2f}" for r in rows[option])
            lines.append(f"| `{group}` | {option} | {mean(option, 'dev', 'f1'):.2f} | {mean(option, 'test', 'f1'):.2f} | "
                         f"{mean(option, 'test', 'p'):.2f} | {mean(option, 'test', 'r'):.2f} | "
                         f"{statistics.mean(r['nested'] for r in rows[option]):.1f} | {per_seed} |")
    if len(group_means) > 1:
        lines += ["", *pooled_table(group_means)]
    write_report(args.out, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
