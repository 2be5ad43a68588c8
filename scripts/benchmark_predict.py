"""predict.py at scale: wall time, CPU time and peak memory (RSS) of the command line on N input lines.

    python scripts/benchmark_predict.py --checkpoint Results/14res/<run> --lines 1000 10000
    python scripts/benchmark_predict.py --checkpoint RUN --code . /tmp/before   # this tree and an older copy

The input is the dataset's test sentences (plain text, so spaCy tokenises and parses them) repeated to
N lines. Each --code folder's predict.py runs in a process of its own (timed from start to exit: model
load included); its CPU time and peak RSS come from os.wait4 (CPU time is the steadier figure on a
shared machine). Outputs of the versions are compared. Writes Results/benchmarks/predict.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_utils import write_report  # noqa: E402


def run_predict(code: str, checkpoint: str, inp: str, out: str, extra: str) -> tuple[float, float, float]:
    """(seconds, CPU seconds, peak RSS in GB) of one predict.py process; `extra`: more flags, space-separated."""
    cmd = [sys.executable, os.path.join(code, "predict.py"), "--checkpoint", checkpoint, "--input", inp,
           "--output", out, "--device", "cpu", *extra.split()]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode()[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20  # ru_maxrss: KiB on Linux


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--lines", type=int, nargs="+", default=[10000])
    ap.add_argument("--code", nargs="+", default=["."], help="folders holding a predict.py (first: this tree)")
    ap.add_argument("--extra", default="", help="more predict.py flags, e.g. '--threads 2'")
    ap.add_argument("--out", default="Results/benchmarks/predict.md")
    args = ap.parse_args(argv)
    with open(os.path.join("data", "aste-v2", args.dataset, "test_triplets.txt"), encoding="utf-8") as f:
        sentences = [line.split("####")[0].strip() for line in f if line.strip()]
    tmp, rows = tempfile.mkdtemp(prefix="bench_predict"), []
    for n in args.lines:
        inp = os.path.join(tmp, f"input{n}.txt")
        with open(inp, "w", encoding="utf-8") as f:
            f.writelines(sentences[k % len(sentences)] + "\n" for k in range(n))
        outputs = [os.path.join(tmp, f"out{n}-{k}.jsonl") for k in range(len(args.code))]
        for code, out in zip(args.code, outputs):
            wall, cpu, gb = run_predict(os.path.abspath(code), os.path.abspath(args.checkpoint), inp, out, args.extra)
            same = open(out, "rb").read() == open(outputs[0], "rb").read()
            rows.append(f"| `{code}` | {n} | {wall:.1f} | {cpu:.1f} | {n / wall:.1f} | {gb:.2f} | "
                        f"{'yes' if same else 'no'} |")
            print(rows[-1], flush=True)
    shutil.rmtree(tmp)
    extra = f" {args.extra}" if args.extra else ""
    command = " ".join(["scripts/benchmark_predict.py --checkpoint", args.checkpoint, "--lines", *map(str, args.lines),
                        "--code", *args.code] + ([f"--extra '{args.extra}'"] if args.extra else []))
    lines = ["# predict.py at scale", "",
             f"Written by `{command}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU: each row is "
             f"`python predict.py --checkpoint RUN --input input.txt --output out.jsonl --device cpu{extra}` "
             f"with the predict.py of `code`, on N lines ({args.dataset} test sentences as plain text, repeated). "
             "Seconds: process start to exit (model load included). CPU seconds: user + system. Peak RSS: "
             "os.wait4.", "",
             "| code | lines | seconds | CPU seconds | lines / s | peak RSS (GB) | output identical to the first "
             "code's |", "|---|---|---|---|---|---|---|", *rows]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
