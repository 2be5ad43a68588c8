"""Atomic file writes: each file is written under a temporary name in its own folder and renamed,
so a kill or a full disk mid-write leaves the previous file intact and never a cut-off one."""
from __future__ import annotations

import glob
import json
import os

TEMP_MARK = ".tmp"  # temporary files are "<target>.tmp<pid>"


def atomic_write(path: str, write) -> None:
    """write(tmp_path) fills a temporary file; it then replaces `path` in one step."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # same folder (os.replace is atomic only within a filesystem); torch's zip writer rejects some
    # mkstemp-style names, so the name is simply the target plus the pid
    tmp = f"{os.path.abspath(path)}{TEMP_MARK}{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
