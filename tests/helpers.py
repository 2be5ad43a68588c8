"""Small builders shared by tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from aste.sampling import ASTEDataset, collate
from conftest import ROOT, TOY
from models.d2e2s import D2E2S, ModelConfig
from models.encoder import load_encoder, load_tokenizer
from models.fusion import FUSIONS, OPTIONS, fusion_options


def tiny_model(encoder_dir: str, **cfg) -> tuple[D2E2S, object]:
    torch.manual_seed(0)
    encoder = load_encoder(encoder_dir)
    hidden = encoder.config.hidden_size
    fusion = cfg.pop("fusion", "tin")
    given = {k: cfg.pop(k) for k in list(cfg) if k in OPTIONS}  # tests pass heads to every fusion
    options = fusion_options(fusion, {k: v for k, v in given.items() if k in FUSIONS[fusion].defaults})
    defaults = dict(encoder_dim=hidden, hidden_dim=16, attention_heads=2, fusion=fusion, fusion_options=options)
    return D2E2S(encoder, ModelConfig(**defaults | cfg)), load_tokenizer(encoder_dir)


def batch_of(sentences, tokenizer, train: bool, neg: int = 10, max_span_size: int = 4, epoch: int = 1):
    ds = ASTEDataset(sentences, tokenizer, max_span_size=max_span_size, train=train, neg_entity_count=neg,
                     neg_triple_count=neg, seed=0)
    ds.set_epoch(epoch)
    return collate([ds[i] for i in range(len(ds))], ds.pad_id), ds


FUSION_VARIANTS = [
    ("tin", {}), ("tin_no_lstm", {}), ("cross_attention", {"cross_attention_heads": 8}),
    ("cross_attention", {"cross_attention_heads": 4}), ("lightweight", {}),
    ("cross_attention", {"cross_attention_heads": 4, "share_cross_attention_weights": True}),
    ("cross_attention", {"cross_attention_heads": 4, "cross_attention_window": 2}),
    ("lightweight", {"cross_attention_window": 3}), ("cross_attention", {"fusion_output_block": False}),
    ("lightweight", {"fusion_output_block": True}),
]


def padded_pair(B, W, D, pad, seed=0):
    """Inputs of B sentences of lengths 1..W, and the same inputs with `pad` extra padding positions
    holding garbage."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, W + 1, (B,), generator=g)
    lengths[0] = W
    mask = torch.arange(W)[None] < lengths[:, None]
    xs = [torch.randn(B, W, D, generator=g) for _ in range(3)]
    adj = (torch.rand(B, W, W, generator=g) > 0.7).float()
    adj = ((adj + adj.transpose(1, 2) + torch.eye(W)) > 0).float() * (mask[:, :, None] & mask[:, None, :])

    def pad_t(t, value):
        shape = list(t.shape)
        shape[1] = pad
        return torch.cat([t, torch.full(shape, value, dtype=t.dtype)], 1)

    mask_p = pad_t(mask, False)
    xs_p = [pad_t(x, 7.0) for x in xs]
    adj_p = torch.zeros(B, W + pad, W + pad)
    adj_p[:, :W, :W] = adj
    return (xs, adj, mask), (xs_p, adj_p, mask_p)


LONG = {"POS": "POSITIVE", "NEG": "NEGATIVE", "NEU": "NEUTRAL"}


def toy_json(path, copies=1):
    items = []
    for _ in range(copies):
        for text, trips in TOY:
            tokens = text.split()
            ents, sents = [], []
            for a, o, s in trips:
                ents += [{"type": "target", "start": a[0], "end": a[1]}, {"type": "opinion", "start": o[0], "end": o[1]}]
                sents.append({"type": LONG[s], "head": len(ents) - 2, "tail": len(ents) - 1})
            n = len(tokens)
            dep = [["dep", i + 2, i + 1] for i in range(n - 1)] + [["ROOT", 0, n]]
            items.append({"tokens": tokens, "entities": ents, "sentiments": sents,
                          "pos": [[t, "X"] for t in tokens], "dependency": dep})
    path.write_text(json.dumps(items), encoding="utf-8")
    return str(path)


def train_cmd(enc, files, out, *extra):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", "toy", "--pretrained_deberta_name", enc,
            "--train_file", files["train"], "--dev_file", files["dev"], "--test_file", files["test"],
            "--results_dir", str(out), "--epochs", "3", "--batch_size", "4", "--task_lr", "3e-3", "--lr", "1e-3",
            "--hidden_dim", "16", "--attention_heads", "2", "--device", "cpu", "--threads", "1", *extra]


def run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, **kw)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res
