"""Whole training epochs of two code versions, timed alternately on the same machine.

    python scripts/benchmark_commits.py 8b562f1 HEAD --fusion tin --rounds 3

The speed of a shared machine drifts by tens of percent within minutes, so an epoch timed now cannot
be compared with one timed an hour ago. This script alternates the two versions (A B, then B A, ...)
so that both see the same drift, and reports each round's ratio. Each version is checked out into a
temporary git worktree; every measurement is a fresh process that times epoch 1 of 14res training
(all batches in training order: collation, forward, loss, backward, fused AdamW) with the offline
MiniLM encoder, batch 16, on CPU. Appends a section to Results/benchmarks/commits.md.
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

# Run inside a version's worktree; uses only interfaces both versions share.
EPOCH_PROGRAM = r"""
import json, os, sys, time
import torch
sys.path.insert(0, os.getcwd())
from aste.input_reader import read_sentences
from aste.parsing import add_parses
from aste.sampling import ASTEDataset, LengthBucketSampler, collate
from models.d2e2s import D2E2S, ModelConfig
from models.encoder import load_encoder, load_tokenizer

fusion, heads, data_dir, cache_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.manual_seed(0)
encoder, tokenizer = load_encoder("all-MiniLM-L6-v2"), load_tokenizer("all-MiniLM-L6-v2")
D = encoder.config.hidden_size
model = D2E2S(encoder, ModelConfig(encoder_dim=D, hidden_dim=D // 2, fusion=fusion,
                                   cross_attention_heads=heads if fusion != "tin" else None))
sentences = read_sentences(os.path.join(data_dir, "train_dep_triple_polarity_result.json"))
add_parses(sentences, cache_dir=cache_dir)
dataset = ASTEDataset(sentences, tokenizer, max_span_size=8, train=True, seed=0)
dataset.set_epoch(1)
sampler = LengthBucketSampler(dataset.lengths(), 16, shuffle=True, seed=0)
sampler.set_epoch(1)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
model.train()
t0 = time.perf_counter()
for idx in sampler:
    batch = collate([dataset[i] for i in idx], dataset.pad_id)
    loss, _, _ = model.loss(batch, *model(batch))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
print(json.dumps({"epoch_seconds": time.perf_counter() - t0, "batches": len(sampler)}))
"""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def time_epoch(tree: str, args) -> float:
    data_dir = os.path.join(ROOT, "data", "d2e2s", args.dataset)
    out = subprocess.run([sys.executable, "-c", EPOCH_PROGRAM, args.fusion, str(args.heads), data_dir,
                          os.path.join(ROOT, "data", ".parse_cache")],
                         cwd=tree, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["epoch_seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="first version (commit, tag or branch): the baseline")
    ap.add_argument("b", help="second version")
    ap.add_argument("--fusion", default="tin", choices=["tin", "cross_attention", "lightweight"])
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="Results/benchmarks/commits.md")
    args = ap.parse_args(argv)
    shas = {v: git("rev-parse", "--short", v) for v in (args.a, args.b)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for v in (args.a, args.b):
            trees[v] = os.path.join(tmp, shas[v])
            git("worktree", "add", "--detach", trees[v], shas[v])
        try:
            for r in range(args.rounds):
                order = (args.a, args.b) if r % 2 == 0 else (args.b, args.a)
                seconds = {v: time_epoch(trees[v], args) for v in order}
                rows.append((r + 1, order[0], seconds[args.a], seconds[args.b]))
                print(f"round {r + 1}: {shas[args.a]} {seconds[args.a]:.1f} s, {shas[args.b]} {seconds[args.b]:.1f} s",
                      flush=True)
        finally:
            for v in (args.a, args.b):
                git("worktree", "remove", "--force", trees[v])
    ratios = [b / a for _, _, a, b in rows]
    name = args.fusion + (f" ({args.heads} heads)" if args.fusion != "tin" else "")
    lines = [f"\n## {shas[args.a]} vs {shas[args.b]}: fusion {name}, {args.dataset}, MiniLM, batch 16, CPU",
             f"\nMeasured {time.strftime('%Y-%m-%d %H:%M')} by `scripts/benchmark_commits.py {args.a} {args.b} "
             f"--fusion {args.fusion}{'' if args.fusion == 'tin' else f' --heads {args.heads}'} --rounds {args.rounds}`; "
             "one training epoch per cell, each in a fresh process, the two versions alternating.\n",
             f"| round | first | {shas[args.a]} s | {shas[args.b]} s | {shas[args.b]} / {shas[args.a]} |", "|---|---|---|---|---|"]
    for (r, first, a, b), ratio in zip(rows, ratios):
        lines.append(f"| {r} | {shas[first]} | {a:.1f} | {b:.1f} | {ratio:.3f} |")
    lines.append(f"\nMedian ratio {statistics.median(ratios):.3f}; fastest epoch {min(r[2] for r in rows):.1f} s "
                 f"({shas[args.a]}) and {min(r[3] for r in rows):.1f} s ({shas[args.b]}).")
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
