"""Peak memory of a training run as the number of span candidates grows.

    python scripts/benchmark_memory.py

Runs train.py (one epoch: training, then dev and test evaluation) with --neg_entity_count 100 / 400
and --max_span_size 8 / 12, each in its own process, and reads the run's peak RSS from its
config.json. Peak memory is set by the longest batches, so the training split is the --longest
longest 14res training sentences (a temporary file; dev and test are the full splits), which keeps
the benchmark short. Writes Results/benchmarks/memory.md. Memory does not depend on other load on
the machine, so no timings are reported here.

A second table says where the memory goes: a fresh process builds the model and its optimizer
state, then runs forward and backward on the batch of the 16 longest training sentences, reading
its resident set after each stage (`--breakdown_child`, run by the main script). The forward keeps
every stage's graph alive, so each row is roughly what that stage holds for the backward.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scripts.bench_utils import staged_forward, write_report  # noqa: E402
SETTINGS = [(100, 8), (400, 8), (100, 12)]
# glibc's own tunables (no code change): a fixed 1 MiB mmap/trim threshold hands freed activation
# buffers back to the OS instead of keeping them in its heap (more page faults, so some speed)
GLIBC_RETURN_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "1048576"}


def breakdown(dataset: str, fusion: str) -> list[tuple[str, float]]:
    """Resident-set growth per stage in this (fresh) process: [(what, MB)]."""
    rows, last = [], [0.0]

    def mark(what):  # rss_mb is imported below, with torch
        now = rss_mb()
        rows.append((what, now - last[0]))
        last[0] = now
    import torch
    import transformers  # noqa: F401
    from aste.trainer import peak_rss_mb, rss_mb
    mark("Python, torch, transformers (imports)")
    from aste.input_reader import read_sentences
    from aste.parsing import add_parses
    from aste.sampling import ASTEDataset, collate
    from models.d2e2s import D2E2S, ModelConfig
    from models.encoder import load_encoder, load_tokenizer
    torch.manual_seed(0)
    tokenizer = load_tokenizer("all-MiniLM-L6-v2")
    sentences = read_sentences(os.path.join(ROOT, "data", "d2e2s", dataset, "train_dep_triple_polarity_result.json"))
    add_parses(sentences, cache_dir=os.path.join(ROOT, "data", ".parse_cache"))
    ds = ASTEDataset(sentences, tokenizer, max_span_size=8, train=True, seed=0)
    ds.set_epoch(1)
    longest = sorted(range(len(ds)), key=lambda i: -ds.lengths()[i])[:16]
    b = collate([ds[i] for i in longest], ds.pad_id)
    mark(f"tokenizer, {dataset} train set")
    encoder = load_encoder("all-MiniLM-L6-v2")
    D = encoder.config.hidden_size
    model = D2E2S(encoder, ModelConfig(encoder_dim=D, hidden_dim=D // 2, fusion=fusion,
                                       cross_attention_heads=4 if fusion != "tin" else None))
    n_params = sum(p.numel() for p in model.parameters())
    mark(f"model weights ({n_params / 1e6:.1f} M parameters)")
    opt = torch.optim.AdamW(model.parameters(), fused=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # allocates AdamW's two moment buffers; the step needs gradients
    opt.zero_grad(set_to_none=True)  # freed, but the heap keeps most of it for the backward below
    mark("gradients + AdamW state (3 x weights)")
    model.train()
    labels = {"encoder": f"forward: encoder ({tuple(b['input_ids'].shape)} subwords)",
              "bilstm": f"forward: word pooling + BiLSTM ({tuple(b['word_mask'].shape)} words)",
              "gcns": "forward: syntactic + semantic GCN", "fusion": f"forward: fusion ({fusion})",
              "self_attention": "forward: self-attention",
              "heads": f"forward: span + pair heads ({b['spans'].shape[0]} spans, {b['pairs'].shape[0]} pairs)"}
    out = staged_forward(model, b, lambda stage, _: mark(labels[stage]))
    loss, _, _ = model.loss(b, out["span_logits"], out["pair_logits"])
    loss.backward()  # its peak: gradients (1 x weights) allocated while activations are being freed
    rows.append(("backward: peak above the forward (gradients reuse the buffers above)", peak_rss_mb() - last[0]))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--longest", type=int, default=160, help="training sentences (the longest ones)")
    ap.add_argument("--out", default="Results/benchmarks/memory.md")
    ap.add_argument("--breakdown_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.breakdown_child:
        print(json.dumps(breakdown(args.dataset, "tin")))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(ROOT, "data", "d2e2s", args.dataset, "train_dep_triple_polarity_result.json")
        items = json.load(open(src, encoding="utf-8"))
        longest = sorted(items, key=lambda x: -len(x["tokens"]))[: args.longest]
        train_file = os.path.join(tmp, "train_longest.json")
        json.dump(longest, open(train_file, "w", encoding="utf-8"))
        runs = [(neg, span, False) for neg, span in SETTINGS] + [(neg, span, True) for neg, span in SETTINGS]
        for neg, span, glibc in runs:
            name = f"neg{neg}-span{span}{'-glibc' if glibc else ''}"
            cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", args.dataset, "--pretrained_deberta_name",
                   "all-MiniLM-L6-v2", "--epochs", str(args.epochs), "--seed", "42", "--neg_entity_count", str(neg),
                   "--max_span_size", str(span), "--results_dir", tmp, "--run_name", name, "--no_checkpoint",
                   "--train_file", train_file]
            env = os.environ | (GLIBC_RETURN_MEMORY if glibc else {})
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            summary = json.load(open(os.path.join(tmp, args.dataset, name, "config.json")))["summary"]
            rows.append((neg, span, glibc, summary["peak_rss_mb"], summary["children_peak_rss_mb"]))
            print(rows[-1], flush=True)
    probe = subprocess.run([sys.executable, os.path.abspath(__file__), "--breakdown_child", "--dataset", args.dataset],
                           cwd=ROOT, check=True, capture_output=True, text=True)
    stages = json.loads(probe.stdout.strip().splitlines()[-1])
    base = {glibc: rss for neg, span, glibc, rss, _ in rows if (neg, span) == SETTINGS[0]}
    lines = ["# Peak memory vs number of span candidates", "",
             f"Written by `scripts/benchmark_memory.py` on {time.strftime('%Y-%m-%d')}: `train.py` on {args.dataset} with "
             f"the offline MiniLM encoder, {args.epochs} epoch(s) on the {args.longest} longest training sentences, then "
             "dev and test evaluation; TIN fusion, batch 16, CPU, one process (no DataLoader workers). Peak RSS of the "
             "training process; the last column is the largest finished child process (a helper forked at start-up: "
             "its figure counts pages shared with the parent, so it is not additional memory). 'glibc 1 MiB' runs set "
             f"`{' '.join(f'{k}={v}' for k, v in GLIBC_RETURN_MEMORY.items())}` in the environment (glibc's own "
             "tunables: freed activation buffers go back to the OS instead of staying in its heap; costs some "
             "speed in page faults).", "",
             "| allocator | --neg_entity_count | --max_span_size | peak RSS MB (training process) | vs 100 / 8 | "
             "largest child MB |", "|---|---|---|---|---|---|"]
    for neg, span, glibc, rss, child in rows:
        lines.append(f"| {'glibc 1 MiB' if glibc else 'default'} | {neg} | {span} | {rss:.0f} | "
                     f"{100 * (rss - base[glibc]) / base[glibc]:+.1f} % | {child:.0f} |")
    lines += ["", "## Where the memory goes", "",
              "A fresh process, TIN fusion, the batch of the 16 longest training sentences; growth of its resident "
              "set after each stage (the forward keeps every stage's graph for the backward). The training run's "
              "peak above this sum is memory freed by earlier steps that glibc's heap keeps for reuse but cannot "
              "always reuse (batches of different shapes fragment it).", "", "| stage | MB | cumulative MB |", "|---|---|---|"]
    total = 0.0
    for what, mb in stages:
        total += mb
        lines.append(f"| {what} | {mb:+.0f} | {total:.0f} |")
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
