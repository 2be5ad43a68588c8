"""Forward + backward time and peak memory of each fusion module, and of a whole training step of the
full model with each module.

    python scripts/benchmark_fusion.py            # CPU (and CUDA fp32 + AMP when a GPU is present)

Module benchmark: deberta-v3-base widths (model width 768), batch 16, 40 and 100 words, random
inputs with realistic padding (lengths drawn down to half the batch maximum), median over repeats
after warm-up. Whole-step benchmark: the full model with the offline MiniLM encoder on real 14res
batches (CPU), or a random deberta-v3-base-sized encoder on CUDA. Writes Results/benchmarks/fusion.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.fusion import build_fusion  # noqa: E402
from scripts.bench_utils import median_seconds, write_report  # noqa: E402

VARIANTS = [("TIN", "tin", None), ("cross-attention, 8 heads", "cross_attention", 8),
            ("cross-attention, 4 heads", "cross_attention", 4), ("lightweight (4 heads)", "lightweight", 4)]


def median_time(fn, device, repeats, warmup=3):
    return median_seconds(fn, device, repeats, warmup) * 1000


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def peak_cpu_mb(fn) -> float:
    """Peak resident memory added by one call (Linux): reset the high-water mark through
    /proc/self/clear_refs, then VmHWM after the call minus VmRSS before it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    before = _status_kb("VmRSS:")
    fn()
    return (_status_kb("VmHWM:") - before) / 1024


def module_rows(device, dtype_name, repeats, dim=768, batch=16):
    rows = []
    amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    for words in (40, 100):
        g = torch.Generator().manual_seed(0)
        lengths = torch.randint(words // 2, words + 1, (batch,), generator=g)
        lengths[0] = words
        mask = (torch.arange(words)[None] < lengths[:, None]).to(device)
        xs = [torch.randn(batch, words, dim, generator=g).to(device).requires_grad_() for _ in range(3)]
        for label, name, heads in VARIANTS:
            torch.manual_seed(0)
            module = build_fusion(name, dim, heads=heads).to(device).train()
            params = sum(p.numel() for p in module.parameters())

            def step():
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    out = module(*xs, mask)
                out.float().pow(2).mean().backward()
            ms = median_time(step, device, repeats)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                step()
                mem = (torch.cuda.max_memory_allocated() - base) / 2**20
            else:
                mem = peak_cpu_mb(step)
            rows.append((words, label, params, ms, mem))
    return rows


def whole_step_rows(device, repeats, batches):
    """The full model's training step with each fusion, on real 14res batches."""
    from aste.input_reader import read_sentences
    from aste.parsing import add_parses
    from aste.sampling import ASTEDataset, LengthBucketSampler, collate
    from models.d2e2s import D2E2S, ModelConfig
    from models.encoder import load_encoder, load_tokenizer

    tokenizer = load_tokenizer("all-MiniLM-L6-v2")
    if device.type == "cuda":
        from transformers import DebertaV2Config, DebertaV2Model
        enc_cfg = DebertaV2Config(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  intermediate_size=3072, relative_attention=True, position_buckets=256,
                                  pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm",
                                  share_att_key=True)
        make_encoder, enc_name = (lambda: DebertaV2Model(enc_cfg)), "deberta-v3-base-sized (random init)"
    else:
        make_encoder, enc_name = (lambda: load_encoder("all-MiniLM-L6-v2")), "all-MiniLM-L6-v2"
    sents = read_sentences(os.path.join("data", "d2e2s", "14res", "train_dep_triple_polarity_result.json"))
    add_parses(sents, cache_dir=os.path.join("data", ".parse_cache"))
    ds = ASTEDataset(sents, tokenizer, max_span_size=8, train=True, seed=0)
    ds.set_epoch(1)
    sampler = LengthBucketSampler(ds.lengths(), 16, shuffle=True, seed=0)
    sampler.set_epoch(1)
    picked = sorted(sampler, key=lambda b: max(ds.lengths()[i] for i in b))
    picked = picked[len(picked) // 2 - batches // 2:][:batches]
    cpu_batches = [collate([ds[i] for i in b], ds.pad_id) for b in picked]
    rows = []
    for label, name, heads in VARIANTS:
        torch.manual_seed(0)
        encoder = make_encoder()
        D = encoder.config.hidden_size
        model = D2E2S(encoder, ModelConfig(encoder_dim=D, hidden_dim=D // 2, fusion=name,
                                           cross_attention_heads=heads)).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        times = []
        for cb in cpu_batches:
            batch = {k: v.to(device) for k, v in cb.items()}

            def step():
                loss, _, _ = model.loss(batch, *model(batch))
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            times.append(median_time(step, device, repeats, warmup=1))
        rows.append((label, statistics.median(times), sum(p.numel() for p in model.parameters())))

    return enc_name, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--step_batches", type=int, default=4)
    ap.add_argument("--skip_whole_step", action="store_true")
    ap.add_argument("--out", default="Results/benchmarks/fusion.md")
    args = ap.parse_args(argv)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    out = ["# Fusion-module benchmark", "",
           f"Written by `scripts/benchmark_fusion.py` on {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
           f"{os.cpu_count()} CPU threads" + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU") + ".",
           "", "## Fusion module alone (forward + backward, width 768, batch 16)", "",
           "| device | precision | words | module | parameters | ms per batch | peak extra memory, MB (CUDA: allocator; CPU: growth of the process high-water mark, 0 when earlier rows had already reserved the memory) |",
           "|---|---|---|---|---|---|---|"]
    for device in devices:
        precisions = ["fp32"] if device.type == "cpu" else ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
        for prec in precisions:
            for words, label, params, ms, mem in module_rows(device, prec, args.repeats):
                out.append(f"| {device.type} | {prec} | {words} | {label} | {params:,} | {ms:.1f} | "
                           f"{'' if mem != mem else f'{mem:.0f}'} |")
                print(out[-1], flush=True)
    if not args.skip_whole_step:
        for device in devices:
            enc_name, rows = whole_step_rows(device, max(2, args.repeats // 2), args.step_batches)
            out += ["", f"## Whole training step of the full model ({enc_name}, {device.type}, fp32, batch 16, "
                    f"median over {args.step_batches} real 14res batches of median length)", "",
                    "| fusion | parameters (whole model) | ms per step |", "|---|---|---|"]
            for label, ms, params in rows:
                out.append(f"| {label} | {params:,} | {ms:.1f} |")
                print(out[-1], flush=True)
    write_report(args.out, out)


if __name__ == "__main__":
    main()
