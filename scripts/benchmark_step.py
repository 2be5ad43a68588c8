"""Time per training step and per evaluation pass, split by stage, plus peak memory.

    python scripts/benchmark_step.py                       # MiniLM on CPU, real 14res batches
    python scripts/benchmark_step.py --deberta_base        # random deberta-v3-base-sized model (GPU if present)

Stages are timed in isolation on the same real batch: each stage's forward + backward (with its
inputs detached and a random output gradient), so they add up to roughly a whole step; the whole
step (forward, loss, backward, optimizer) is timed as it runs in training. The span head's stage
includes the range-max table both heads read; the pair head's stage is the pair head alone. Median
over repeats after warm-up. Writes a markdown table to Results/benchmarks/step.md (appends a section per config).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aste.evaluator import Evaluator  # noqa: E402
from aste.input_reader import read_sentences  # noqa: E402
from aste.parsing import add_parses  # noqa: E402
from aste.sampling import ASTEDataset, LengthBucketSampler, collate  # noqa: E402
from aste.environment import peak_rss_mb  # noqa: E402
from models.d2e2s import D2E2S, ModelConfig  # noqa: E402
from models.decoding import enumerate_pairs  # noqa: E402
from models.encoder import load_encoder, load_tokenizer  # noqa: E402
from models.fusion import DEFAULT_HEADS, FUSIONS  # noqa: E402
from models.span_ops import RangeMax  # noqa: E402
from scripts.bench_utils import median_seconds as timed  # noqa: E402
from scripts.bench_utils import sync  # noqa: E402


def fwd_bwd(fn, *inputs):
    """Forward + backward of one stage with detached inputs and a random upstream gradient."""
    inputs = [x.detach().requires_grad_() if x.is_floating_point() else x for x in inputs]

    def run():
        out = fn(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(torch.randn_like(out))
    return run


def build(args, device):
    if args.deberta_base:
        from transformers import DebertaV2Config, DebertaV2Model
        cfg = DebertaV2Config(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=512, relative_attention=True,
                              position_buckets=256, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                              norm_rel_ebd="layer_norm", share_att_key=True)
        encoder = DebertaV2Model(cfg)  # random weights: timing only
        tokenizer = load_tokenizer("all-MiniLM-L6-v2")  # batches only need ids < vocab
        name = "deberta-v3-base-sized (random init)"
    else:
        encoder = load_encoder("all-MiniLM-L6-v2")
        tokenizer = load_tokenizer("all-MiniLM-L6-v2")
        name = "all-MiniLM-L6-v2"
    D = encoder.config.hidden_size
    mcfg = ModelConfig(encoder_dim=D, hidden_dim=D // 2, fusion=args.fusion,
                       cross_attention_heads=args.heads if args.fusion in DEFAULT_HEADS else None,
                       enhanced_semgcn=args.enhanced)
    return D2E2S(encoder, mcfg).to(device), tokenizer, name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="14res")
    ap.add_argument("--fusion", default="tin", choices=sorted(FUSIONS))
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--enhanced", action="store_true")
    ap.add_argument("--deberta_base", action="store_true")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--batches", type=int, default=6, help="real batches timed (median)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"])
    ap.add_argument("--epoch_repeats", type=int, default=2, help="whole training epochs timed (0 = none)")
    ap.add_argument("--out", default="Results/benchmarks/step.md")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    model, tokenizer, enc_name = build(args, device)
    amp = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.amp]

    base = os.path.join("data", "d2e2s", args.dataset)
    t0 = time.perf_counter()
    train_s = read_sentences(os.path.join(base, "train_dep_triple_polarity_result.json"))
    test_s = read_sentences(os.path.join(base, "test_dep_triple_polarity_result.json"))
    add_parses(train_s + test_s, cache_dir=os.path.join("data", ".parse_cache"))
    train_ds = ASTEDataset(train_s, tokenizer, max_span_size=8, train=True, seed=0)
    test_ds = ASTEDataset(test_s, tokenizer, max_span_size=8, train=False)
    train_ds.set_epoch(1)
    load_seconds = time.perf_counter() - t0
    sampler = LengthBucketSampler(train_ds.lengths(), args.batch_size, shuffle=True, seed=0)
    sampler.set_epoch(1)
    # batches of median length, the typical case (the table also gives the sentence length)
    epoch_batches = list(sampler)  # training order
    by_length = sorted(epoch_batches, key=lambda b: max(train_ds.lengths()[i] for i in b))
    picked = by_length[len(by_length) // 2 - args.batches // 2:][: args.batches]

    def collate_batch(idx):
        return collate([train_ds[i] for i in idx], train_ds.pad_id)

    def to_dev(b):
        return {k: v.to(device) for k, v in b.items()}

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step_on(batch):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, _, _ = model.loss(batch, *model(batch))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    rows = {k: [] for k in ("data", "encoder", "bilstm", "syntactic_gcn", "semantic_gcn", "fusion",
                            "self_attention", "span_head", "pair_head", "step")}
    encoder_only = []
    model.train()
    for idx in picked:
        cpu_batch = collate_batch(idx)
        rows["data"].append(timed(lambda: collate_batch(idx), torch.device("cpu"), args.repeats))
        batch = to_dev(cpu_batch)
        mask = batch["word_mask"]
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            def enc_fn():
                return model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            rows["encoder"].append(timed(lambda: enc_fn().sum().backward(), device, args.repeats))
            encoder_only.append(rows["encoder"][-1])
            with torch.no_grad():  # every stage's input, from one forward pass through the model's own stages
                words = model.word_features(batch)
                ctx = model.context(words, mask)
                h_syn, h_sem = model.syn_gcn(ctx, batch["dep_adj"]), model.sem_gcn(ctx, mask)
                fused = model.fusion(model.word_proj(words), h_syn, h_sem, mask)
                feats = model.fuse(words, h_syn, h_sem, mask)
                table, sc = model.span_inputs(batch, feats)
                _, pooled, width = model.span_head(table, batch["spans"], sc)
            rows["bilstm"].append(timed(fwd_bwd(lambda w: model.context(w, mask), words), device, args.repeats))
            rows["syntactic_gcn"].append(timed(fwd_bwd(lambda c: model.syn_gcn(c, batch["dep_adj"]), ctx), device, args.repeats))
            rows["semantic_gcn"].append(timed(fwd_bwd(lambda c: model.sem_gcn(c, mask), ctx), device, args.repeats))
            rows["fusion"].append(timed(fwd_bwd(lambda w, a, b: model.fusion(model.word_proj(w), a, b, mask), words, h_syn, h_sem), device, args.repeats))
            rows["self_attention"].append(timed(fwd_bwd(lambda f: model.self_attention(f, f, f, key_padding_mask=~mask, need_weights=False)[0], fused), device, args.repeats))

            def span_stage(f):
                table, sc = model.span_inputs(batch, f)
                return model.span_head(table, batch["spans"], sc)[0]
            rows["span_head"].append(timed(fwd_bwd(span_stage, feats), device, args.repeats))

            # the pair head alone: it reads the span head's range-max table and pooled spans, which are
            # built once here (their cost is the span head's); backward runs into the table's input
            table = RangeMax(feats.detach().requires_grad_())
            rows["pair_head"].append(timed(fwd_bwd(lambda p, w: model.pair_head(table, batch["spans"], p, w, batch["pairs"]),
                                                   pooled, width), device, args.repeats))

        rows["step"].append(timed(lambda: step_on(batch), device, args.repeats))

    # one whole training epoch, every batch of the epoch-1 order: collation, forward, loss, backward, AdamW
    # (train.py also clips gradients, steps the scheduler and logs the loss: a few ms per step more)
    # (the minimum over repeats: on a shared machine other load only ever adds time)
    epoch_times = []
    for _ in range(args.epoch_repeats):
        t_epoch = time.perf_counter()
        for idx in epoch_batches:
            batch = to_dev(collate_batch(idx))
            step_on(batch)
        sync(device)
        epoch_times.append(time.perf_counter() - t_epoch)

    # evaluation pass over the whole test set, with decoding split out
    eval_sampler = LengthBucketSampler(test_ds.lengths(), args.batch_size, shuffle=False)
    eval_batches = [to_dev(collate([test_ds[i] for i in b], test_ds.pad_id)) for b in eval_sampler]
    model.eval()

    def eval_pass():
        ev = Evaluator(test_ds)
        with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            for b in eval_batches:
                ev.add(b["index"], model.predict(b, 0.4, 1000))
        return ev.metrics()
    eval_seconds = min(timed(eval_pass, device, 1, warmup=0) for _ in range(max(1, args.repeats - 1) + 1))

    def decode_only():
        with torch.no_grad():
            for b in eval_batches:
                feats = model.features(b)
                table, sc = model.span_inputs(b, feats)
                logits = model.span_head(table, b["spans"], sc)[0]
                score, label = logits.softmax(-1).max(-1)
                enumerate_pairs(b["spans"][:, 0], label, score, feats.shape[0], 1000)
    features_only = timed(lambda: [model.features(b) for b in eval_batches], device, 1, warmup=0)
    with torch.no_grad():
        decode_seconds = max(0.0, timed(decode_only, device, 1, warmup=0) - features_only)

    med = {k: statistics.median(v) * 1000 for k, v in rows.items()}
    stage_sum = sum(v for k, v in med.items() if k not in ("step", "data"))
    outside = sum(med[k] for k in ("syntactic_gcn", "semantic_gcn", "self_attention", "span_head", "pair_head", "data"))
    lengths = [max(len(train_ds.encoded[i].input_ids) for i in b) for b in picked]
    lines = [
        f"\n## {enc_name}, fusion {args.fusion}{'' if args.fusion == 'tin' else f' ({args.heads} heads)'}"
        f"{', enhanced SemGCN' if args.enhanced else ''}, batch {args.batch_size}, device {device}"
        f"{'' if device.type == 'cpu' else ' (' + torch.cuda.get_device_name() + ')'}, amp {args.amp}",
        f"\nMeasured {time.strftime('%Y-%m-%d')} with torch {torch.__version__} on "
        f"{os.cpu_count()} CPU threads available ({torch.get_num_threads()} used by torch); "
        f"{len(picked)} real {args.dataset} train batches of median length ({min(lengths)}-{max(lengths)} subwords), "
        f"median of {args.repeats} repeats after warm-up. Data loading/encoding of train+test: {load_seconds:.1f} s.\n",
        "| stage (forward + backward, isolated) | ms per batch | share of stage sum |", "|---|---|---|",
    ]
    for k in ("data", "encoder", "bilstm", "syntactic_gcn", "semantic_gcn", "fusion", "self_attention", "span_head", "pair_head"):
        share = "" if k == "data" else f"{100 * med[k] / stage_sum:.1f} %"
        lines.append(f"| {k.replace('_', ' ')} | {med[k]:.1f} | {share} |")
    lines += [
        f"| **whole training step** (forward, loss, backward, AdamW) | **{med['step']:.1f}** | |",
        f"\nOutside encoder, BiLSTM and fusion (GCNs, self-attention, heads, data): {outside:.1f} ms = "
        f"{100 * outside / (stage_sum + med['data']):.1f} % of the stage sum.",
        f"Encoder alone, forward + backward: {statistics.median(encoder_only) * 1000:.1f} ms per batch.",
        f"Training epoch estimate ({len(sampler)} batches x whole step of a median batch): "
        f"{len(sampler) * med['step'] / 1000:.1f} s"
        + (f"; **measured whole epoch** (all {len(epoch_batches)} batches of epoch 1 in training order, "
           f"collation included; minimum of {len(epoch_times)}): **{min(epoch_times):.1f} s** "
           f"(each: {', '.join(f'{t:.1f}' for t in epoch_times)} s)." if epoch_times else "."),
        f"Evaluation of the whole test set ({len(test_ds)} sentences, decoding and metrics included; minimum of "
        f"{max(1, args.repeats - 1) + 1} passes): "
        f"{eval_seconds:.2f} s; decoding (pair enumeration, outside the network) {decode_seconds:.2f} s.",
        f"Peak RSS of this benchmark process: {peak_rss_mb():.0f} MB"
        + (f"; peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if device.type == "cuda" else "") + ".",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    new = not os.path.exists(args.out)
    with open(args.out, "a", encoding="utf-8") as f:
        if new:
            f.write("# Training-step and evaluation benchmark\n\nWritten by `scripts/benchmark_step.py`; "
                    "each section is one invocation.\n")
        f.write(text)


if __name__ == "__main__":
    main()
