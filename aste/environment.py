"""Where a run executes: seeding, device and mixed-precision checks, torchrun's process group, and
the versions and commit recorded in config.json."""
from __future__ import annotations

import logging
import os
import platform
import random
import resource
import subprocess
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger("aste")


def seed_everything(seed: int) -> None:
    from transformers import set_seed  # python, numpy and torch (every CUDA device included)
    set_seed(seed)


def cuda_build_supports(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether a torch build compiled for `arch_list` (torch.cuda.get_arch_list(), e.g. ['sm_70',
    'compute_90']) has kernels for a GPU of this capability: a binary for sm_XY runs on X.Z with
    Z >= Y; PTX (compute_XY) is compiled at load time for any capability >= X.Y."""
    for arch in arch_list:
        kind, _, number = arch.partition("_")
        number = number.rstrip("af")  # sm_90a, sm_100f: architecture-specific variants
        if not number.isdigit() or len(number) < 2:
            continue
        built = (int(number[:-1]), int(number[-1]))
        if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:
            return True
        if kind == "compute" and built <= capability:
            return True
    return False


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is visible (use --device auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    if device.type != "cuda":
        return device
    # stop with one line when the installed torch has no kernels for this GPU (e.g. a P100, sm_60, under
    # a torch built for CUDA 12.8, which starts with sm_70): torch.cuda.is_available() is True there,
    # and the first kernel fails
    arch_list = torch.cuda.get_arch_list()
    capability = torch.cuda.get_device_capability(device)
    if arch_list and not cuda_build_supports(capability, arch_list):
        sm = f"sm_{capability[0]}{capability[1]}"
        raise SystemExit(
            f"error: {torch.cuda.get_device_name(device)} ({sm}) is not supported by the installed torch "
            f"{torch.__version__} (CUDA {torch.version.cuda}, built for {' '.join(arch_list)}); install a build "
            f"with {sm} kernels, e.g. pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126 "
            "(README, 'On Kaggle')")
    return device


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of --amp on this device (None = fp32)."""
    if amp == "off":
        return None
    if device.type != "cuda":
        log.warning("--amp %s ignored on CPU (fp32)", amp)
        return None
    # bf16 in hardware needs sm_80 (Ampere) or later: torch.cuda.is_bf16_supported() also counts
    # emulation, and so says True on a P100, where bf16 would run slowly
    if amp == "bf16" and torch.cuda.get_device_capability(device) < (8, 0):
        raise SystemExit(f"error: --amp bf16: {torch.cuda.get_device_name(device)} has no bf16 in hardware "
                         "(it needs sm_80 or later; a P100 is sm_60): use --amp fp16")
    return torch.float16 if amp == "fp16" else torch.bfloat16


def can_compile(device: torch.device) -> tuple[bool, str]:
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (7, 0):
        cap = torch.cuda.get_device_capability(device)
        return False, f"{torch.cuda.get_device_name(device)} (sm_{cap[0]}{cap[1]}) is too old for Triton"
    try:
        import triton  # noqa: F401
    except ImportError:
        if device.type == "cuda":
            return False, "Triton is not installed"
    return True, ""


@dataclass
class Distributed:
    """torchrun's process group: rank 0 evaluates, logs and saves; --batch_size is the global batch."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1:
            torch.distributed.destroy_process_group()


def setup_distributed(device_name: str) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(torch.distributed.get_rank(), world, local)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB (Linux ru_maxrss, KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rng_state() -> dict:
    # data sampling is a pure function of (seed, epoch, index); dropout draws from torch's RNG
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_commit() -> dict:
    """HEAD of the code's checkout and whether it has uncommitted changes outside Results/ (None
    outside git)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        # Results/ holds what runs and scripts write (a sweep's summary plot, reports), not code
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)Results")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment_record(device: torch.device, spacy_model: str | None = None) -> dict:
    """Library versions, device, and the commit: what config.json needs to say how a run was made."""
    import transformers
    rec = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "numpy": np.__version__, "device": str(device), "cpu_threads": torch.get_num_threads(), **git_commit()}
    if device.type == "cuda":
        rec.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    if spacy_model:
        from .parsing import package_version, resolve_spacy_name
        name = resolve_spacy_name(spacy_model)
        rec.update(spacy=package_version("spacy"), spacy_pipeline=name, spacy_pipeline_version=package_version(name))
    return rec
