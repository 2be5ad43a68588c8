"""The run folder ``<results_dir>/<dataset>/<run_name>/``: what a run writes and how it is read back.

  config.json             every flag, model config, encoder, module parameter counts, data report,
                          environment (versions, device, GPU, commit); once finished, the summary
  metrics.jsonl           one line per finished epoch: losses, every P/R/F1 on dev and test, seconds
  best.safetensors        weights of the best-dev epoch (safetensors: never pickled)
  encoder/                encoder config + tokenizer files: the folder predicts offline
  test_predictions.jsonl  test sentences with gold and predicted triplets at the best-dev epoch
  best_dev_metrics.json   dev metrics of that epoch
  state.pt                resume state (model, optimizer, scheduler, scaler, RNG, history); removed
                          when the run finishes

Every file is written atomically. metrics.jsonl is rewritten whole from the history after each
epoch, so after any kill it holds exactly the finished epochs, and a resumed run rewrites it from the
history it loaded (never appends to one it did not load).
"""
from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from models import D2E2S, ModelConfig
from models.encoder import load_config, load_encoder, load_tokenizer
from models.fusion import default_output_block, fusion_heads

from .atomic import atomic_write, remove_temp_files, write_json, write_jsonl


class RunFolderError(RuntimeError):
    """A run folder that cannot be read or used; the message names the file and what to do."""


class RunFolder:
    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # ---- config ------------------------------------------------------------------------------
    def read_config(self) -> dict:
        path = self.file("config.json")
        if not os.path.isfile(path):
            raise RunFolderError(f"{path}: no such file (is {self.path} a run folder written by train.py?)")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunFolderError(f"{path}: not readable JSON ({err})") from None
        if not isinstance(config, dict) or not isinstance(config.get("args"), dict):
            raise RunFolderError(f"{path}: has no 'args' (not a config.json written by train.py)")
        return config

    def write_config(self, config: dict) -> None:
        write_json(config, self.file("config.json"))

    def finished_summary(self) -> dict | None:
        if not os.path.isfile(self.file("config.json")):
            return None
        return self.read_config().get("summary")

    def has_history(self) -> bool:
        return os.path.exists(self.file("metrics.jsonl"))

    def write_history(self, history: list[dict]) -> None:
        write_jsonl(history, self.file("metrics.jsonl"))

    def write_best_epoch(self, test_predictions: list[dict], dev_metrics: dict) -> None:
        write_jsonl(test_predictions, self.file("test_predictions.jsonl"))
        write_json(dev_metrics, self.file("best_dev_metrics.json"))

    def best_epoch_on_disk(self) -> int | None:
        """The epoch of the best-epoch files now in the folder (from best_dev_metrics.json)."""
        try:
            with open(self.file("best_dev_metrics.json"), encoding="utf-8") as f:
                return json.load(f).get("epoch")
        except (OSError, ValueError):
            return None

    def clear_outputs(self) -> None:
        """A fresh start in a folder an earlier attempt wrote to: nothing of that attempt is kept."""
        for name in ("metrics.jsonl", "best.safetensors", "test_predictions.jsonl", "best_dev_metrics.json"):
            if os.path.exists(self.file(name)):
                os.remove(self.file(name))

    def remove_temp_files(self) -> list[str]:
        return remove_temp_files(self.path)

    # ---- weights, encoder files, resume state ---------------------------------------------------
    def save_best(self, model: torch.nn.Module) -> None:
        atomic_write(self.file("best.safetensors"), lambda tmp: save_model(model, tmp))  # handles tied tensors

    def load_best(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        path = self.file("best.safetensors")
        if not os.path.isfile(path):
            raise RunFolderError(f"{path}: no such file (was the run trained with --no_checkpoint, "
                                 "or has no epoch finished yet?)")
        try:
            missing, unexpected = load_model(model, path, strict=False, device=str(device))
        except (SafetensorError, OSError) as err:
            raise RunFolderError(f"{path}: not a readable safetensors file ({err})") from None
        except RuntimeError as err:  # shapes that do not match config.json's model
            first = str(err).strip().splitlines()[-1].strip()
            raise RunFolderError(f"{path}: weights do not match the model in config.json ({first})") from None
        if missing or unexpected:
            raise RunFolderError(f"{path}: weights do not match the model in config.json "
                                 f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")

    def save_encoder_files(self, encoder_config, tokenizer) -> None:
        encoder_config.save_pretrained(self.file("encoder"))
        tokenizer.save_pretrained(self.file("encoder"))

    def has_state(self) -> bool:
        return os.path.isfile(self.file("state.pt"))

    def save_state(self, state: dict) -> None:
        atomic_write(self.file("state.pt"), lambda tmp: torch.save(state, tmp))

    def load_state(self) -> dict:
        path = self.file("state.pt")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a truncated zip, a foreign pickle, ...: one line
            raise RunFolderError(f"{path}: unreadable resume state ({err.__class__.__name__}); delete it to "
                                 "restart the run from epoch 1, or continue from a copy of the folder") from None

    def remove_state(self) -> None:
        if self.has_state():
            os.remove(self.file("state.pt"))


def load_run(run_dir: str, device: str | torch.device = "cpu"):
    """(model in eval mode on `device`, tokenizer, config.json) from a run folder alone: no network
    and no copy of the original encoder needed."""
    run = RunFolder(run_dir)
    config = run.read_config()
    enc_dir = run.file("encoder")
    try:
        encoder = load_encoder(enc_dir, pretrained=False, config=load_config(enc_dir))
        tokenizer = load_tokenizer(enc_dir)
    except RuntimeError as err:
        raise RunFolderError(f"{enc_dir}: {str(err).splitlines()[0]}") from None
    try:
        model = D2E2S(encoder, ModelConfig(**config["model"]))
    except (TypeError, ValueError, KeyError) as err:
        raise RunFolderError(f"{run.file('config.json')}: its 'model' section does not describe a model ({err})") from None
    run.load_best(model, device)
    return model.to(device).eval(), tokenizer, config


def default_run_name(args) -> str:
    parts = [args.fusion]
    heads = fusion_heads(args.fusion, args.cross_attention_heads)
    if heads is not None:
        parts.append(f"h{heads}")
    if args.use_enhanced_semgcn:
        parts.append("esem")
    if args.share_cross_attention_weights:
        parts.append("shared")
    if args.cross_attention_window:
        parts.append(f"win{args.cross_attention_window}")
    if args.loss_weighting != "fixed":
        parts.append(args.loss_weighting)
    if args.fusion_output_block != default_output_block(args.fusion):
        parts.append("ob" if args.fusion_output_block else "no-ob")
    if args.span_boundary:
        parts.append("bd")
    if args.pair_distance_embedding:
        parts.append(f"dist{args.pair_distance_embedding}")
    if args.neg_overlap_fraction or args.neg_overlap_pairs:
        parts.append(f"hn{args.neg_overlap_fraction:g}x{args.neg_overlap_pairs}")
    if args.fusion_lr is not None:
        parts.append(f"flr{args.fusion_lr:g}")
    if args.overlap_filter != "spans":  # not the default
        parts.append(f"decode-{args.overlap_filter}")
    enc = os.path.basename(os.path.normpath(args.pretrained_deberta_name)).lower()
    return "-".join([enc] + parts + [f"seed{args.seed}"])


# What runs made before a flag existed did, where that is not the flag's default today.
BEFORE_FLAG_EXISTED = {"overlap_filter": "none", "fusion_output_block": False}


def saved_flag(saved: dict, key: str, default):
    """A flag's value in a run's saved args; for a run that predates the flag, what it did then."""
    return saved[key] if key in saved else BEFORE_FLAG_EXISTED.get(key, default)


# flags that may differ between a run and its resumption (they do not change what is computed)
RESUME_FREE = {"resume", "threads", "num_workers", "log_every", "tensorboard", "device", "results_dir", "run_name",
               "save_state_every", "debug", "config"}
PATH_FLAGS = {"train_file", "dev_file", "test_file", "data_dir", "pretrained_deberta_name"}


def resume_conflicts(saved: dict, args, defaults: dict) -> list[str]:
    """The flags of `args` that differ from the run's saved ones (a flag the run predates had its
    default; files are compared by resolved path)."""
    def norm(key, value):
        if key in PATH_FLAGS and isinstance(value, str) and os.path.exists(value):
            return os.path.realpath(value)
        return value
    out = []
    for key, now in vars(args).items():
        if key in RESUME_FREE:
            continue
        before = saved_flag(saved, key, defaults.get(key))
        if norm(key, before) != norm(key, now):
            out.append(f"--{key} was {before!r}, now {now!r}")
    return out
