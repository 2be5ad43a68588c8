"""Packed nn.LSTM vs MaskedBiLSTM (dense per-direction kernels): forward + backward time.

    python scripts/benchmark_lstm.py          # CPU (and CUDA when a GPU is present)

Both compute the same function (tests/test_modules.py::test_masked_bilstm_equals_packed_lstm).
The two bidirectional 2-layer LSTMs of the model at MiniLM width (model width M = 384): the BiLSTM
after the encoder (384 -> 2 x 192) and TIN's (768 -> 2 x 384); batch 16; sentence lengths drawn
between half the batch maximum and the maximum. Median over repeats after warm-up.
Writes Results/benchmarks/lstm.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.lstm import MaskedBiLSTM  # noqa: E402
from scripts.bench_utils import median_seconds, write_report  # noqa: E402

SHAPES = [("BiLSTM after the encoder", 384, 192), ("TIN's BiLSTM", 768, 384)]


def packed_run(lstm, x, lengths):
    out, _ = lstm(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--lengths", type=int, nargs="+", default=[20, 40, 80])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="Results/benchmarks/lstm.md")
    args = ap.parse_args(argv)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    lines = ["# BiLSTM: packed sequences vs dense per-direction kernels", "",
             f"Written by `scripts/benchmark_lstm.py` on {time.strftime('%Y-%m-%d')} with torch {torch.__version__}, "
             f"{torch.get_num_threads()} CPU threads; batch {args.batch_size}, 2 layers, fp32, forward + backward, "
             f"median of {args.repeats} after warm-up.", "",
             "| device | LSTM | words (max) | packed nn.LSTM ms | MaskedBiLSTM ms | speed-up |", "|---|---|---|---|---|---|"]
    for device in devices:
        for label, n_in, hidden in SHAPES:
            torch.manual_seed(0)
            packed = torch.nn.LSTM(n_in, hidden, 2, batch_first=True, bidirectional=True).to(device)
            ours = MaskedBiLSTM(n_in, hidden, 2).to(device)
            for W in args.lengths:
                lengths = torch.randint(W // 2, W + 1, (args.batch_size,), device=device)
                lengths[0] = W
                mask = torch.arange(W, device=device)[None, :] < lengths[:, None]
                x = torch.randn(args.batch_size, W, n_in, device=device, requires_grad=True)

                def step(fn):
                    def run():
                        out = fn()
                        out.backward(torch.ones_like(out))
                    return run
                t_packed = median_seconds(step(lambda: packed_run(packed, x, lengths)), device, args.repeats) * 1000
                t_ours = median_seconds(step(lambda: ours(x, mask)), device, args.repeats) * 1000
                lines.append(f"| {device.type} | {label} ({n_in} -> 2 x {hidden}) | {W} | {t_packed:.1f} | "
                             f"{t_ours:.1f} | {t_packed / t_ours:.2f}x |")
                print(lines[-1], flush=True)
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
