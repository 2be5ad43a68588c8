"""Timing and report helpers shared by the benchmark scripts."""
from __future__ import annotations

import os
import statistics
import time

import torch


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


def staged_forward(model, batch: dict, after_stage=None) -> dict:
    """The D2E2S forward (features, then span and pair heads) written out stage by stage, so that
    benchmarks can time or measure each stage; after_stage(name, outputs) runs after each one.
    Returns every intermediate. tests/test_modules.py checks it against D2E2S.forward."""
    from models.encoder import pool_subwords

    def done(name):
        if after_stage is not None:
            after_stage(name, out)
    mask = batch["word_mask"]
    out = {"h": model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state}
    done("encoder")
    out["words"] = pool_subwords(out["h"], batch["subword_word"], mask.shape[1])
    out["context"] = model.lstm_dropout(model.lstm(out["words"], mask))
    done("bilstm")
    out["h_syn"] = model.syn_gcn(out["context"], batch["dep_adj"], mask)
    out["h_sem"] = model.sem_gcn(out["context"], mask)
    done("gcns")
    out["fused"] = model.fusion(model.word_proj(out["words"]), out["h_syn"], out["h_sem"], mask)
    done("fusion")
    fused = out["fused"]
    att, _ = model.self_attention(fused, fused, fused, key_padding_mask=~mask, need_weights=False)
    out["feats"] = (fused + att) * mask.unsqueeze(-1).to(fused.dtype)
    done("self_attention")
    out["table"], ctx = model.span_inputs(batch, out["feats"])
    out["span_logits"], out["pooled"], out["width"] = model.span_head(out["table"], batch["spans"], ctx)
    out["pair_logits"] = model.pair_head(out["table"], batch["spans"], out["pooled"], out["width"], batch["pairs"])
    done("heads")
    return out
