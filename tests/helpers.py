"""Small builders shared by tests."""
from __future__ import annotations

import torch

from aste.sampling import ASTEDataset, collate
from models.d2e2s import D2E2S, ModelConfig
from models.encoder import load_encoder, load_tokenizer


def tiny_model(encoder_dir: str, **cfg) -> tuple[D2E2S, object]:
    torch.manual_seed(0)
    encoder = load_encoder(encoder_dir)
    hidden = encoder.config.hidden_size
    defaults = dict(encoder_dim=hidden, hidden_dim=16, attention_heads=2, cross_attention_heads=None)
    defaults.update(cfg)
    return D2E2S(encoder, ModelConfig(**defaults)), load_tokenizer(encoder_dir)


def batch_of(sentences, tokenizer, train: bool, neg: int = 10, max_span_size: int = 4, epoch: int = 1):
    ds = ASTEDataset(sentences, tokenizer, max_span_size=max_span_size, train=train, neg_entity_count=neg,
                     neg_triple_count=neg, seed=0)
    ds.set_epoch(epoch)
    return collate([ds[i] for i in range(len(ds))], ds.pad_id), ds
