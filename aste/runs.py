"""The run folder ``<results_dir>/<dataset>/<run_name>/`` (its files: docs/design.md, "The run folder"):
what a run writes and how it is read back. Every file is written atomically (the large ones after a check
that the disk has room). metrics.jsonl is rewritten whole from the history after each epoch, so after any
kill it holds exactly the finished epochs (a resumed run rewrites it from the history it loaded, never
appends to one it did not load). A run folder holds no symbolic links and never leads out of
--results_dir (both refused when it is opened).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from models import D2E2S, ModelConfig
from models.encoder import load_config, load_encoder, load_tokenizer
from models.fusion import FUSIONS, OPTIONS
from models.errors import UserError

from .atomic import DiskFullError, atomic_write, size_text, write_json, write_jsonl

log = logging.getLogger("aste")
LOCK_FILE = ".lock"
SPACE_MARGIN = 16 * 2**20  # file headers, and the small files written next
SPACE_ADVICE = ("Free space (other runs' state.pt and best.safetensors are the large files), or use a --results_dir "
                "on a larger disk; --no_checkpoint leaves out best.safetensors")


class RunFolderError(UserError):
    """A run folder that cannot be read or used; the message names the file and what to do."""


class RunFolder:
    def __init__(self, path: str):
        self.path = path

    @classmethod
    def inside(cls, results_dir: str, dataset: str, run_name: str) -> "RunFolder":
        """<results_dir>/<dataset>/<run_name>, refused where it would lead out of --results_dir (a name with
        a path separator or '..', or a symbolic link on the way; --results_dir itself may be a link)."""
        check_name("--dataset", dataset)
        check_name("--run_name", run_name)
        path = os.path.join(results_dir, dataset, run_name)
        root, real = os.path.realpath(results_dir), os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise RunFolderError(f"{path} leads to {real}, outside --results_dir {results_dir} (a symbolic link on "
                                 "the way): remove the link, or use another --run_name")
        return cls(path)

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
        return self.read_config().get("summary") if os.path.isfile(self.file("config.json")) else None

    def history_file(self) -> str | None:
        """metrics.jsonl, or metrics.jsonl.gz for a finished run archived in Results/; None if neither."""
        return next((self.file(n) for n in ("metrics.jsonl", "metrics.jsonl.gz") if os.path.exists(self.file(n))), None)

    def has_history(self) -> bool:
        return self.history_file() is not None

    def write_history(self, history: list[dict]) -> None:
        write_jsonl(history, self.file("metrics.jsonl"))

    def write_best_epoch(self, test_predictions: list[dict], dev_metrics: dict) -> None:
        write_jsonl(test_predictions, self.file("test_predictions.jsonl"))
        write_json(dev_metrics, self.file("best_dev_metrics.json"))

    def write_eval(self, name: str, metrics: dict, predictions: list[dict]) -> str:
        """--eval_only's eval_<name>_metrics.json and eval_<name>_predictions.jsonl; returns their prefix."""
        out = self.file(f"eval_{name}")
        if {"/", os.sep} & set(name):
            raise RunFolderError(f"{out}_metrics.json would lead out of the run folder ('/' in --dataset)")
        try:
            write_json(metrics, out + "_metrics.json")
            write_jsonl(predictions, out + "_predictions.jsonl")
        except DiskFullError:
            raise
        except OSError as err:
            raise RunFolderError(f"cannot write {out}_metrics.json: {err.strerror} (is the run folder read-only? "
                                 "copy it first)") from None
        return out

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

    # ---- one writer, writes in place ----------------------------------------------------------------
    def claim(self) -> None:
        """Before this process touches the folder (train, --resume, --eval_only): no links, and the lock."""
        self.refuse_links()
        self.lock()

    def refuse_links(self) -> None:
        """Writes stay in the folder: neither it nor anything in it may be a symbolic link (a linked
        train.log, encoder/ or state.pt would be written through)."""
        links = [self.path] if os.path.islink(os.path.normpath(self.path)) else []
        for folder, dirs, files in os.walk(self.path):
            links += [os.path.join(folder, n) for n in dirs + files if os.path.islink(os.path.join(folder, n))]
        if links:
            raise RunFolderError(f"{links[0]} is a symbolic link (to {os.readlink(links[0])}); a run folder holds its "
                                 "own files: replace the link with a copy, or use another --run_name")

    def lock(self) -> None:
        """One process per run folder: an OS lock on .lock, held until this process ends; the kernel
        releases it however the process ends (a killed run, or a folder copied elsewhere, is never
        locked). The holder's pid and host go into the file, for the message a second start gets."""
        path = self.file(LOCK_FILE)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise RunFolderError(f"{path}: cannot create the lock file ({err.strerror}); is the run folder "
                                 "read-only? copy it first") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(f"{self.path} is in use by {holder} (one process per run folder): wait for it to "
                                 "end, or use another --run_name") from None
        except OSError as err:  # a filesystem without locks
            log.warning("%s not locked (%s): start no second process on it", self.path, err.strerror)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self.lock_fd = fd  # never closed: closing it would release the lock

    def check_space(self, name: str, needed: int) -> None:
        """Stop before writing `name` when the disk cannot hold it beside its previous version (an atomic
        write keeps both until the rename)."""
        free = shutil.disk_usage(self.path).free
        if needed + SPACE_MARGIN > free:
            raise DiskFullError(f"cannot write {self.file(name)}: it needs about {size_text(needed)} and the disk "
                                f"has {size_text(free)} free; the previous files are kept. {SPACE_ADVICE}")

    # ---- weights, encoder files, resume state ---------------------------------------------------
    def save_best(self, model: torch.nn.Module) -> None:
        self.check_space("best.safetensors", tensor_bytes(model.state_dict()))
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
        self.check_space("state.pt", tensor_bytes(state))

        def write(tmp):
            with open(tmp, "wb") as f:  # a file object: a full disk reaches atomic_write as ENOSPC
                torch.save(state, f)
        atomic_write(self.file("state.pt"), write)

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


def tensors(obj):
    """The tensors in a nested state dict (dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (dict, list, tuple)):
        for x in obj.values() if isinstance(obj, dict) else obj:
            yield from tensors(x)


def tensor_bytes(obj) -> int:
    """Bytes of the tensor storages in a nested state dict, each storage once (tied weights share one)."""
    storages = {(t.device, t.untyped_storage().data_ptr()): t.untyped_storage().nbytes() for t in tensors(obj)}
    return sum(storages.values())


def check_name(flag: str, name: str) -> None:
    """A run or dataset name is one folder name: nothing that leads elsewhere."""
    if name in ("", ".", "..") or {"/", os.sep, "\0"} & set(name):
        raise RunFolderError(f"{flag} {name!r}: must be a single folder name (no '/', not '.' or '..')")


# ModelConfig fields renamed to the flags' names; the fusion options were fields of their own
RENAMED_MODEL_FIELDS = {"lstm_dropout": "drop_out_rate", "enhanced_semgcn": "use_enhanced_semgcn"}


def model_config(saved: dict) -> ModelConfig:
    """ModelConfig from config.json's 'model' section, also as runs before the fusion registry wrote it."""
    saved = {RENAMED_MODEL_FIELDS.get(k, k): v for k, v in saved.items()}
    if "fusion_options" not in saved:
        # the output block's old default was off; a heads count of None meant the fusion's default
        old = {"fusion_output_block": False} | {k: saved.pop(k) for k in list(saved) if k in OPTIONS}
        accepted = FUSIONS[saved.get("fusion", "tin")].defaults
        saved["fusion_options"] = {k: old[k] if old.get(k) is not None else v for k, v in accepted.items()}
    return ModelConfig(**saved)


def load_run(run_dir: "str | RunFolder", device: str | torch.device = "cpu"):
    """(model in eval mode on `device`, tokenizer, config.json) from a run folder alone: no network
    and no copy of the original encoder needed."""
    run = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    config = run.read_config()
    enc_dir = run.file("encoder")
    try:
        encoder = load_encoder(enc_dir, pretrained=False, config=load_config(enc_dir))
        tokenizer = load_tokenizer(enc_dir)
    except RuntimeError as err:
        raise RunFolderError(f"{enc_dir}: {str(err).splitlines()[0]}") from None
    try:
        model = D2E2S(encoder, model_config(config["model"]))
    except (TypeError, ValueError, KeyError) as err:
        raise RunFolderError(f"{run.file('config.json')}: its 'model' section does not describe a model ({err})") from None
    run.load_best(model, device)
    return model.to(device).eval(), tokenizer, config


# What runs made before a flag existed did, where that is not the flag's default today.
BEFORE_FLAG_EXISTED = {"overlap_filter": "none", "fusion_output_block": False, "patience": 0}


def saved_flag(saved: dict, key: str, default):
    """A flag's value in a run's saved args; for a run that predates the flag, what it did then."""
    return saved[key] if key in saved else BEFORE_FLAG_EXISTED.get(key, default)


# flags that may differ between a run and its resumption (they do not change what is computed; --threads
# and --device change its rounding, so a seed moves: summarize.py lists --threads)
# (data paths change between Kaggle sessions: the files' contents are checked instead, train.py)
RESUME_FREE = {"resume", "threads", "num_workers", "log_every", "tensorboard", "device", "results_dir", "run_name",
               "save_state_every", "debug", "config", "time_budget", "train_file", "dev_file", "test_file", "data_dir"}
PATH_FLAGS = {"pretrained_deberta_name"}


def resume_conflicts(saved: dict, args, defaults: dict) -> list[str]:
    """The flags of `args` that differ from the run's saved ones (a flag the run predates had its
    default; files are compared by resolved path)."""
    def norm(key, value):
        if key in PATH_FLAGS and isinstance(value, str) and os.path.exists(value):
            return os.path.realpath(value)
        return value
    out = []
    for key, now in vars(args).items():
        if key in RESUME_FREE or (key in OPTIONS and key not in FUSIONS[args.fusion].defaults):
            continue  # (an option of another fusion: inert; runs before the registry saved 0 / False for it)
        before = saved_flag(saved, key, defaults.get(key))
        if norm(key, before) != norm(key, now):
            out.append(f"--{key} was {before!r}, now {now!r}")
    return out
