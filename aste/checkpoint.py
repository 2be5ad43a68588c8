"""Safe, atomic persistence: model weights as safetensors, training state via torch.save loaded
with weights_only=True. Every file is written to a temporary name and renamed, so a kill mid-write
leaves the previous file intact."""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_model, save_model


def _atomic(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # same folder (os.replace is atomic only within a filesystem); torch's zip writer rejects some
    # mkstemp-style names, so the name is simply the target plus the pid
    tmp = f"{os.path.abspath(path)}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_weights(model: torch.nn.Module, path: str) -> None:
    _atomic(path, lambda tmp: save_model(model, tmp))  # save_model handles shared (tied) tensors


def load_weights(model: torch.nn.Module, path: str, device: str | torch.device = "cpu") -> None:
    missing, unexpected = load_model(model, path, strict=True, device=str(device))
    assert not missing and not unexpected


def save_state(state: dict, path: str) -> None:
    _atomic(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def write_json(obj, path: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
    _atomic(path, write)


def write_jsonl(records, path: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    _atomic(path, write)
