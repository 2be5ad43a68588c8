"""Time of a whole training epoch and of an evaluation pass, plus peak memory; appends a section to
Results/benchmarks/step.md.

    python scripts/benchmark_step.py                               # MiniLM on CPU, real 14res batches
    python scripts/benchmark_step.py --encoder all-mpnet-base-v2   # a base-size encoder (GPU if present)
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aste.environment import peak_rss_mb  # noqa: E402
from aste.evaluator import Evaluator  # noqa: E402
from aste.input_reader import read_sentences  # noqa: E402
from aste.parsing import add_parses  # noqa: E402
from aste.sampling import ASTEDataset, LengthBucketSampler, collate  # noqa: E402
from aste.trainer import to_device  # noqa: E402
from models.d2e2s import D2E2S, ModelConfig  # noqa: E402
from models.encoder import load_encoder, load_tokenizer  # noqa: E402
from models.fusion import FUSIONS, fusion_options  # noqa: E402
from scripts.bench_utils import MINILM, append_report, median_seconds as timed  # noqa: E402


def load_split(dataset: str, split: str, tokenizer) -> ASTEDataset:
    sentences = read_sentences(os.path.join("data", "d2e2s", dataset, f"{split}_dep_triple_polarity_result.json"))
    add_parses(sentences, cache_dir=os.path.join("data", ".parse_cache"))
    return ASTEDataset(sentences, tokenizer, max_span_size=8, train=split == "train", seed=0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--encoder", default=MINILM, help="as train.py --pretrained_deberta_name")
    ap.add_argument("--fusion", default="tin", choices=sorted(FUSIONS))
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--enhanced", action="store_true")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="evaluation passes timed (the fastest is reported)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"])
    ap.add_argument("--epoch_repeats", type=int, default=2, help="training epochs timed (the fastest is reported)")
    ap.add_argument("--out", default="Results/benchmarks/step.md")
    args = ap.parse_args(argv)
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    encoder = load_encoder(args.encoder)
    heads = args.heads if "cross_attention_heads" in FUSIONS[args.fusion].defaults else None
    dim = encoder.config.hidden_size
    model = D2E2S(encoder, ModelConfig(encoder_dim=dim, hidden_dim=dim // 2, fusion=args.fusion,
                                       fusion_options=fusion_options(args.fusion, {"cross_attention_heads": heads}),
                                       use_enhanced_semgcn=args.enhanced)).to(device)
    amp = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.amp]
    tokenizer = load_tokenizer(args.encoder)

    t0 = time.perf_counter()
    train_ds, test_ds = load_split(args.dataset, "train", tokenizer), load_split(args.dataset, "test", tokenizer)
    train_ds.set_epoch(1)
    load_seconds = time.perf_counter() - t0
    sampler = LengthBucketSampler(train_ds.lengths(), args.batch_size, shuffle=True, seed=0)
    sampler.set_epoch(1)
    epoch_batches = list(sampler)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step(batch):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, _, _ = model.loss(batch, *model(batch))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.train()

    # collation, forward, loss, backward, AdamW (train.py also clips gradients, steps the scheduler and logs:
    # a few ms per step more); the fastest epoch is reported, as other load on a machine only ever adds time
    def epoch():
        for idx in epoch_batches:
            step(to_device(collate([train_ds[i] for i in idx], train_ds.pad_id), device))
    epoch_times = [timed(epoch, device, 1, warmup=0) for _ in range(args.epoch_repeats)]

    # the floor: the encoder alone (forward + backward) against the whole step, on a batch of median length
    median = sorted(epoch_batches, key=lambda b: max(train_ds.lengths()[i] for i in b))[len(epoch_batches) // 2]
    batch = to_device(collate([train_ds[i] for i in median], train_ds.pad_id), device)

    def encoder_alone():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            model.word_features(batch).float().sum().backward()
    step_ms, encoder_ms = (1000 * timed(fn, device, args.repeats) for fn in (lambda: step(batch), encoder_alone))
    opt.zero_grad(set_to_none=True)

    eval_batches = [to_device(collate([test_ds[i] for i in b], test_ds.pad_id), device)
                    for b in LengthBucketSampler(test_ds.lengths(), args.batch_size, shuffle=False)]
    model.eval()

    def eval_pass():
        ev = Evaluator(test_ds)
        with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            for b in eval_batches:
                ev.add(b["index"], model.predict(b, 0.4, 1000))
        return ev.metrics()
    eval_seconds = min(timed(eval_pass, device, 1, warmup=0) for _ in range(args.repeats))

    gpu_peak = f"; peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if device.type == "cuda" else ""
    lines = [f"\n## {args.encoder}, fusion {args.fusion}{'' if heads is None else f' ({heads} heads)'}"
             f"{', enhanced SemGCN' if args.enhanced else ''}, batch {args.batch_size}, device {device}"
             f"{'' if device.type == 'cpu' else ' (' + torch.cuda.get_device_name() + ')'}, amp {args.amp}",
             f"\nMeasured {time.strftime('%Y-%m-%d')} with torch {torch.__version__} on {os.cpu_count()} CPU threads "
             f"available ({torch.get_num_threads()} used by torch). Loading and encoding {args.dataset} train+test: "
             f"{load_seconds:.1f} s.\n"]
    if epoch_times:
        lines.append(f"**Training epoch** ({len(epoch_batches)} batches in training order; fastest of "
                     f"{len(epoch_times)}): **{min(epoch_times):.1f} s**, "
                     f"{1000 * min(epoch_times) / len(epoch_batches):.0f} ms per step "
                     f"(each epoch: {', '.join(f'{t:.1f}' for t in epoch_times)} s).")
    lines += [f"Batch of median length: whole step {step_ms:.0f} ms, encoder alone (forward + backward) "
              f"{encoder_ms:.0f} ms (encoder share {100 * encoder_ms / step_ms:.0f} %; step / encoder "
              f"{step_ms / encoder_ms:.2f}x).",
              f"Evaluation of the whole test set ({len(test_ds)} sentences, decoding and metrics included; fastest of "
              f"{args.repeats} passes): {eval_seconds:.2f} s.",
              f"Peak RSS of this benchmark process: {peak_rss_mb():.0f} MB{gpu_peak}."]
    append_report(args.out, "Training-step and evaluation benchmark", "benchmark_step.py", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
