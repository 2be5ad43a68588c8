"""Atomic file writes: each file is written under a temporary name in its own folder and renamed,
so a kill or a full disk mid-write leaves the previous file intact and never a cut-off one."""
from __future__ import annotations

import errno
import glob
import json
import os
import shutil

from models.errors import UserError

TEMP_MARK = ".tmp"  # temporary files are "<target>.tmp<pid>"
# how a full disk reads where no OSError carries the errno: safetensors' message, and torch's zip writer
# writing to a path ("unexpected pos": its C++ stream drops the errno)
DISK_FULL_TEXT = ("No space left", "Disk quota exceeded", "unexpected pos")


class DiskFullError(UserError, OSError):
    """No room on the disk for a file; its previous version is kept. An OSError too, for callers that
    handle every failed write alike."""


def size_text(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC (or a full quota) however a writer reports it: an OSError in the exception's chain
    (torch.save to a file object chains it), else the message of a writer that loses the errno."""
    chain = []
    while err is not None and len(chain) < 20:
        chain.append(err)
        err = err.__cause__ or err.__context__
    os_errors = [e.errno for e in chain if isinstance(e, OSError) and e.errno is not None]
    if os_errors:
        return any(code in (errno.ENOSPC, errno.EDQUOT) for code in os_errors)
    return any(text in str(e) for e in chain for text in DISK_FULL_TEXT)


def atomic_write(path: str, write) -> None:
    """write(tmp_path) fills a temporary file; it then replaces `path` in one step. A full disk is one
    DiskFullError; whatever fails, the temporary file is removed and `path` is as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # same folder (os.replace is atomic only within a filesystem); torch's zip writer rejects some
    # mkstemp-style names, so the name is simply the target plus the pid
    tmp = f"{os.path.abspath(path)}{TEMP_MARK}{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            free = size_text(shutil.disk_usage(folder).free)
            raise DiskFullError(f"cannot write {path}: the disk is full ({free} free); the previous file is kept. "
                                "Free space, or write to a larger disk (a run: --results_dir)") from None
        raise


def remove_temp_files(folder: str) -> list[str]:
    """Delete what interrupted writes left in `folder` (a SIGKILL skips atomic_write's clean-up)."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), f"*{TEMP_MARK}[0-9]*")):
        if path.rsplit(TEMP_MARK, 1)[1].isdigit() and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def write_json(obj, path: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
    atomic_write(path, write)


def write_jsonl(records, path: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    atomic_write(path, write)
