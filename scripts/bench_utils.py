"""Timing and report helpers shared by the benchmark scripts."""
from __future__ import annotations

import os
import statistics
import time

import torch

MINILM = "all-MiniLM-L6-v2"  # the offline encoder of the README command


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median wall time of fn() over `repeats` calls after `warmup` calls (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_report(path: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


def append_report(path: str, title: str, script: str, text: str) -> None:
    """Print `text` and append it to the report at `path`, begun with `title` when new."""
    print(text)
    if not os.path.exists(path):
        text = f"# {title}\n\nWritten by `scripts/{script}`; each section is one invocation.\n" + text
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
