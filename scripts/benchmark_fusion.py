"""Forward + backward time (and peak CUDA memory) of each fusion module alone: width 768 (deberta-v3-base's),
batch 16, 40 and 100 words, random inputs with realistic padding; writes Results/benchmarks/fusion.md. For the
whole model with a fusion, see scripts/benchmark_step.py --fusion NAME.

    python scripts/benchmark_fusion.py            # CPU (and CUDA fp32 + AMP when a GPU is present)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.fusion import build_fusion  # noqa: E402
from scripts.bench_utils import median_seconds, write_report  # noqa: E402

VARIANTS = [("TIN", "tin", None), ("cross-attention, 8 heads", "cross_attention", 8),
            ("cross-attention, 4 heads", "cross_attention", 4), ("lightweight (4 heads)", "lightweight", 4)]


def module_rows(device, dtype_name, repeats, dim=768, batch=16):
    amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    for words in (40, 100):
        g = torch.Generator().manual_seed(0)
        lengths = torch.randint(words // 2, words + 1, (batch,), generator=g)
        lengths[0] = words
        mask = (torch.arange(words)[None] < lengths[:, None]).to(device)
        xs = [torch.randn(batch, words, dim, generator=g).to(device).requires_grad_() for _ in range(3)]
        for label, name, heads in VARIANTS:
            torch.manual_seed(0)
            module = build_fusion(name, dim, cross_attention_heads=heads).to(device).train()

            def step():
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    out = module(*xs, mask)
                out.float().pow(2).mean().backward()
            ms = median_seconds(step, device, repeats, warmup=3) * 1000
            mem = None
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                step()
                mem = (torch.cuda.max_memory_allocated() - base) / 2**20
            yield words, label, sum(p.numel() for p in module.parameters()), ms, mem


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="Results/benchmarks/fusion.md")
    args = ap.parse_args(argv)
    cuda = ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else []) if torch.cuda.is_available() else []
    out = ["# Fusion-module benchmark", "", f"Written by `scripts/benchmark_fusion.py` on {time.strftime('%Y-%m-%d')}, "
           f"torch {torch.__version__}, {os.cpu_count()} CPU threads"
           + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU") + ".",
           "", "## Fusion module alone (forward + backward, width 768, batch 16)", "",
           "| device | precision | words | module | parameters | ms per batch | peak extra CUDA memory (MB) |",
           "|---|---|---|---|---|---|---|"]
    for device, prec in [("cpu", "fp32")] + [("cuda", p) for p in cuda]:
        for words, label, params, ms, mem in module_rows(torch.device(device), prec, args.repeats):
            out.append(f"| {device} | {prec} | {words} | {label} | {params:,} | {ms:.1f} | "
                       f"{'' if mem is None else f'{mem:.0f}'} |")
            print(out[-1], flush=True)
    write_report(args.out, out)


if __name__ == "__main__":
    main()
