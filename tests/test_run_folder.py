"""The run folder under contention and faults: one process per folder (an OS lock that dies with its
process), a full disk (checked before the large writes, and ENOSPC mid-write) that leaves the previous
files whole and a run that resumes, and writes that never leave --results_dir (names, symbolic links)."""
import errno
import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT
from helpers import run, tiny_model, train_cmd

TIMING = {"train_seconds", "sentences_per_second", "dev_seconds", "test_seconds", "peak_rss_mb", "peak_cuda_mb"}


def metrics(folder) -> list[dict]:
    """metrics.jsonl without the timing keys (they differ between two identical runs)."""
    with open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8") as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def fails_with_one_line(cmd, *expected, **kw) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, **kw)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stdout[-2000:] + res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def injected(code: str, cmd: list[str]) -> list[str]:
    """The train.py command `cmd`, with `code` run first in its process (a fault injected into it)."""
    boot = code + "\nimport runpy, sys\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
    return [sys.executable, "-c", boot, *cmd[1:]]


def temp_files(folder) -> list[str]:
    return glob.glob(os.path.join(folder, "*.tmp[0-9]*"))


# train.py that stops at its first config.json write (the run folder is locked and train.log exists by
# then) until the file $GO exists
PAUSED = """
import os, time
import aste.runs
write_config = aste.runs.RunFolder.write_config
def paused(self, config):
    deadline = time.time() + 240
    while not os.path.exists(os.environ["GO"]) and time.time() < deadline:
        time.sleep(0.05)
    aste.runs.RunFolder.write_config = write_config
    return write_config(self, config)
aste.runs.RunFolder.write_config = paused
"""


def start_paused(cmd, go) -> subprocess.Popen:
    proc = subprocess.Popen(injected(PAUSED, cmd), cwd=ROOT, env={**os.environ, "GO": str(go)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(cmd[cmd.index("--results_dir") + 1], "toy", cmd[cmd.index("--run_name") + 1], "train.log")
    deadline = time.time() + 120
    while not os.path.exists(log) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(log), proc.communicate(timeout=60)
    return proc


@pytest.fixture(scope="module")
def alone(tiny_bert_dir, toy_files, tmp_path_factory) -> str:
    """A 3-epoch run on its own, with its best.safetensors: what the runs below must reproduce."""
    out = tmp_path_factory.mktemp("alone")
    run(train_cmd(tiny_bert_dir, toy_files, out, "--run_name", "alone"))
    return os.path.join(out, "toy", "alone")


# ---- one process per run folder ---------------------------------------------------------------------
def test_a_second_process_on_a_running_folder_stops_and_the_first_is_untouched(tiny_bert_dir, toy_files, tmp_path,
                                                                                 alone):
    """Before: the second one trained in the first one's folder (its log lines in the first's train.log,
    the first's temporary files deleted at its start)."""
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "r")
    first = start_paused(cmd, tmp_path / "go")
    try:
        folder = os.path.join(tmp_path, "toy", "r")
        half_written = os.path.join(folder, f"state.pt.tmp{first.pid}")  # as if the first were writing its state
        open(half_written, "wb").write(b"PK")
        line = fails_with_one_line(cmd, folder, f"pid {first.pid} on ", "in use")
        assert "--run_name" in line and os.path.exists(half_written)
        (tmp_path / "go").touch()
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, out[-2000:] + err[-2000:]
    finally:
        first.kill()
    assert metrics(folder) == metrics(alone)
    assert open(os.path.join(folder, "train.log"), encoding="utf-8").read().count("RESULT") == 1


def test_a_lock_left_by_a_killed_run_does_not_block_resume(tiny_bert_dir, toy_files, tmp_path, alone):
    """A SIGKILLed run leaves .lock (with its pid) but not the lock; --resume goes on. --results_dir may be
    a symbolic link."""
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "results")
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path / "results", "--run_name", "k")
    killed = start_paused(cmd, tmp_path / "never")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    folder = os.path.join(tmp_path, "results", "toy", "k")
    assert open(os.path.join(folder, ".lock")).read().startswith(f"pid {killed.pid} on ")
    run(cmd + ["--resume"])
    assert metrics(folder) == metrics(alone)


def test_eval_only_refuses_a_folder_another_process_holds(alone, toy_files, tmp_path):
    from aste.runs import RunFolder
    folder = shutil.copytree(alone, tmp_path / "copy")  # with the .lock of the finished run: not locked
    RunFolder(str(folder)).lock()  # this process now holds it
    cmd = [sys.executable, "train.py", "--eval_only", "--checkpoint", str(folder), "--test_file", toy_files["test"],
           "--device", "cpu"]
    fails_with_one_line(cmd, f"pid {os.getpid()} on ", "in use")
    assert not glob.glob(os.path.join(folder, "eval_*"))


def test_a_finished_run_archived_as_in_results_is_not_overwritten(tiny_bert_dir, toy_files, tmp_path):
    """Results/ keeps finished runs with metrics.jsonl gzipped: a new run of the same name is refused."""
    folder = tmp_path / "toy" / "r"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"args": {}, "summary": {"best_epoch": 1}}))
    (folder / "metrics.jsonl.gz").write_bytes(b"")
    res = subprocess.run(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "r"), capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 1 and "already holds a run" in res.stderr and "Traceback" not in res.stderr
    assert json.loads((folder / "config.json").read_text())["summary"] == {"best_epoch": 1}


def test_the_lock_file_is_not_history(tmp_path):
    from aste.runs import RunFolder
    folder = RunFolder(str(tmp_path))
    folder.lock()
    assert os.path.exists(tmp_path / ".lock") and not folder.has_history()
    with pytest.raises(Exception, match=f"in use by pid {os.getpid()} on "):
        RunFolder(str(tmp_path)).lock()  # a second open file description: refused even in one process


# ---- a full disk ------------------------------------------------------------------------------------
# torch.save's second call (epoch 2's state.pt) fails as torch fails on a full disk, after a part of the
# file; the state.pt it would replace is copied to $SNAPSHOT first
FULL_AT_SECOND_STATE = """
import errno, os, shutil, torch
save, calls = torch.save, []
def full(obj, f, *args, **kw):
    calls.append(f)
    if len(calls) < 2:
        return save(obj, f, *args, **kw)
    shutil.copy(os.path.join(os.path.dirname(f if isinstance(f, str) else f.name), "state.pt"), os.environ["SNAPSHOT"])
    out = open(f, "wb") if isinstance(f, str) else f
    out.write(b"PK half a state")
    out.flush()
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
torch.save = full
"""

FULL_AT_BEST = """
import safetensors.torch
from safetensors import SafetensorError
def full(model, filename, *args, **kw):
    with open(filename, "wb") as f:
        f.write(b"half a safetensors file")
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
safetensors.torch.save_model = full
"""


def test_a_full_disk_during_the_state_write_is_one_line_and_resume_works(tiny_bert_dir, toy_files, tmp_path, alone):
    """Before: two chained tracebacks ending in 'unexpected pos'."""
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "s")
    snapshot = tmp_path / "state_before.pt"
    fails_with_one_line(injected(FULL_AT_SECOND_STATE, cmd), "state.pt", "the disk is full", "previous file is kept",
                        env={**os.environ, "SNAPSHOT": str(snapshot)})
    folder = os.path.join(tmp_path, "toy", "s")
    assert open(os.path.join(folder, "state.pt"), "rb").read() == snapshot.read_bytes()  # epoch 1's, whole
    assert torch.load(os.path.join(folder, "state.pt"), weights_only=True)["train_state"]["epoch"] == 1
    assert not temp_files(folder) and len(metrics(folder)) == 1
    run(cmd + ["--resume"])  # space freed
    assert metrics(folder) == metrics(alone)


def test_a_full_disk_during_best_safetensors_is_one_line_and_resume_works(tiny_bert_dir, toy_files, tmp_path, alone):
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "b")
    fails_with_one_line(injected(FULL_AT_BEST, cmd), "best.safetensors", "the disk is full")
    folder = os.path.join(tmp_path, "toy", "b")
    assert not temp_files(folder) and not os.path.exists(os.path.join(folder, "best.safetensors"))
    assert json.load(open(os.path.join(folder, "config.json")))["args"]["run_name"] == "b"  # whole
    run(cmd + ["--resume"])
    assert metrics(folder) == metrics(alone) and os.path.getsize(os.path.join(folder, "best.safetensors")) > 0


def test_too_little_room_for_the_state_stops_before_writing_it(tiny_bert_dir, toy_files, tmp_path):
    little_room = ("import shutil\nusage = shutil.disk_usage\n"
                   "shutil.disk_usage = lambda p: usage(p)._replace(free=5 * 2**20)\n")
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "p", "--no_checkpoint")
    fails_with_one_line(injected(little_room, cmd), "state.pt", "needs about", "5 MB free", "--results_dir",
                        "--no_checkpoint")
    folder = os.path.join(tmp_path, "toy", "p")
    assert not temp_files(folder) and not os.path.exists(os.path.join(folder, "state.pt"))


class FillsUp:
    """A file with room for `room` bytes; then its writes fail as on a full disk."""
    def __init__(self, path, room):
        self.f, self.room = open(path, "wb"), room

    def write(self, data):
        if self.f.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def python_write(tmp):
    FillsUp(tmp, 10).write(b"x" * 100)


def torch_to_a_file_object(tmp):  # what RunFolder.save_state does; torch chains the OSError
    f = FillsUp(tmp, 1000)
    try:
        torch.save({"w": torch.zeros(10_000)}, f)
    finally:
        f.f.close()


def torch_to_a_path(tmp):  # torch's C++ writer loses the errno
    open(tmp, "wb").write(b"PK")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def safetensors_write(tmp):
    from safetensors import SafetensorError
    open(tmp, "wb").write(b"half")
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("writer", [python_write, torch_to_a_file_object, torch_to_a_path, safetensors_write])
def test_a_full_disk_in_any_writer_is_one_error_and_keeps_the_previous_file(tmp_path, writer):
    from aste.atomic import DiskFullError, atomic_write
    from models.errors import UserError
    target = tmp_path / "file"
    target.write_bytes(b"previous")
    with pytest.raises(DiskFullError, match="the disk is full") as err:
        atomic_write(str(target), writer)
    assert isinstance(err.value, UserError) and isinstance(err.value, OSError)
    assert target.read_bytes() == b"previous" and os.listdir(tmp_path) == ["file"]


def test_other_write_errors_stay_what_they_are(tmp_path):
    from aste.atomic import DiskFullError, atomic_write

    def broken(tmp):
        open(tmp, "wb").write(b"x")
        raise OSError(errno.EIO, "Input/output error")
    with pytest.raises(OSError) as err:
        atomic_write(str(tmp_path / "file"), broken)
    assert err.value.errno == errno.EIO and not isinstance(err.value, DiskFullError) and os.listdir(tmp_path) == []


def test_best_safetensors_previous_file_stays_whole(tiny_bert_dir, tmp_path, monkeypatch):
    import aste.runs
    from aste.atomic import DiskFullError
    from aste.runs import RunFolder
    model, _ = tiny_model(tiny_bert_dir)
    folder = RunFolder(str(tmp_path))
    folder.save_best(model)
    before = open(folder.file("best.safetensors"), "rb").read()
    usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(p)._replace(free=3 * 2**20))
    with pytest.raises(DiskFullError, match=r"best.safetensors: it needs about \d+ MB and the disk has 3 MB free.*"
                                            r"--results_dir.*--no_checkpoint"):
        folder.save_best(model)
    monkeypatch.undo()
    monkeypatch.setattr(aste.runs, "save_model", lambda m, tmp: safetensors_write(tmp))
    with pytest.raises(DiskFullError, match="the disk is full"):
        folder.save_best(model)
    assert open(folder.file("best.safetensors"), "rb").read() == before and os.listdir(tmp_path) == ["best.safetensors"]


def test_the_space_estimate_matches_the_files(tiny_bert_dir, tmp_path):
    """tensor_bytes: each storage once (the optimizer's moments count, tied weights once)."""
    from aste.runs import SPACE_MARGIN, RunFolder, tensor_bytes
    model, _ = tiny_model(tiny_bert_dir)
    opt = torch.optim.AdamW(model.parameters())
    sum(p.sum() for p in model.parameters()).backward()
    opt.step()
    folder = RunFolder(str(tmp_path))
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "history": [{"epoch": 1}]}
    folder.save_state(state)
    folder.save_best(model)
    for name, needed in (("state.pt", tensor_bytes(state)), ("best.safetensors", tensor_bytes(model.state_dict()))):
        assert needed <= os.path.getsize(folder.file(name)) <= needed + SPACE_MARGIN, name
    shared = torch.zeros(1000)
    assert tensor_bytes({"a": shared, "b": [shared, shared[:10]]}) == 4000


# ---- writes stay in place ---------------------------------------------------------------------------
@pytest.mark.parametrize("flag,name,escaped", [("--run_name", "../../escaped", "a/escaped"),
                                               ("--dataset", "../..", "r")])
def test_names_cannot_leave_results_dir(tiny_bert_dir, toy_files, tmp_path, flag, name, escaped):
    results = tmp_path / "a" / "results"
    cmd = train_cmd(tiny_bert_dir, toy_files, results, "--run_name", "r") + [flag, name]
    fails_with_one_line(cmd, flag, "single folder name")
    assert not (tmp_path / escaped).exists()


def test_run_folder_paths_stay_inside_results_dir(tmp_path):
    from aste.runs import RunFolder, RunFolderError
    for dataset, name in (("toy", "a/b"), ("toy", ".."), ("toy", "."), ("toy", ""), ("a/b", "r"), ("..", "r")):
        with pytest.raises(RunFolderError, match="single folder name"):
            RunFolder.inside(str(tmp_path), dataset, name)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "results").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "results" / "toy")  # the dataset folder leads out
    with pytest.raises(RunFolderError, match="outside --results_dir"):
        RunFolder.inside(str(tmp_path / "results"), "toy", "r")
    os.symlink(tmp_path / "results", tmp_path / "link")  # --results_dir itself may be a link
    assert RunFolder.inside(str(tmp_path / "link"), "other", "r").path == os.path.join(tmp_path, "link", "other", "r")
    assert RunFolder.inside(str(tmp_path / "link"), "toy..x", "r..2").path.endswith("toy..x/r..2")


@pytest.mark.parametrize("name", ["train.log", "metrics.jsonl", "state.pt", "best.safetensors", "encoder",
                                  "encoder/vocab.txt", "tensorboard"])
def test_no_symbolic_link_in_a_run_folder(tmp_path, name):
    from aste.runs import RunFolder, RunFolderError
    folder = tmp_path / "run"
    (folder / "encoder").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    RunFolder(str(folder)).refuse_links()  # no link: fine
    if name == "encoder":
        os.rmdir(folder / "encoder")
    os.symlink(tmp_path / "outside", folder / name)
    with pytest.raises(RunFolderError, match=f"{name} is a symbolic link"):
        RunFolder(str(folder)).refuse_links()


@pytest.mark.parametrize("case", ["train.log", "encoder", "run folder", "run folder out"])
def test_links_are_refused_when_a_run_opens(tiny_bert_dir, toy_files, tmp_path, case):
    """Before: train.log and encoder/ were written through the links, a linked run folder was used."""
    results, outside = tmp_path / "results", tmp_path / "outside"
    (results / "toy").mkdir(parents=True)
    outside.mkdir()
    (outside / "kept").write_text("outside\n")
    folder = results / "toy" / "r"
    extra = ["--resume"] if case == "encoder" else []
    if case == "train.log":
        folder.mkdir()
        os.symlink(outside / "kept", folder / "train.log")
    elif case == "encoder":
        folder.mkdir()
        os.symlink(outside, folder / "encoder")
    elif case == "run folder":
        (results / "other").mkdir()
        os.symlink(results / "other", folder)
    else:
        os.symlink(outside, folder)
    expected = "outside --results_dir" if case == "run folder out" else "is a symbolic link"
    fails_with_one_line(train_cmd(tiny_bert_dir, toy_files, results, "--run_name", "r", *extra), expected)
    assert os.listdir(outside) == ["kept"] and (outside / "kept").read_text() == "outside\n"


def test_eval_only_refuses_a_link_in_the_run_folder(alone, toy_files, tmp_path):
    folder = shutil.copytree(alone, tmp_path / "copy")
    (tmp_path / "kept").write_text("outside\n")
    os.symlink(tmp_path / "kept", folder / "eval_test_predictions.jsonl")
    cmd = [sys.executable, "train.py", "--eval_only", "--checkpoint", str(folder), "--test_file", toy_files["test"],
           "--device", "cpu"]
    fails_with_one_line(cmd, "eval_test_predictions.jsonl is a symbolic link")
    assert (tmp_path / "kept").read_text() == "outside\n" and not os.path.exists(folder / "eval_test_metrics.json")


# ---- sweeps: which checkpoints stay -----------------------------------------------------------------
def sweep_module():
    spec = importlib.util.spec_from_file_location("sweep", os.path.join(ROOT, "scripts", "sweep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_keeps_the_best_checkpoint_of_each_dataset(tmp_path):
    sweep = sweep_module()
    runs = [{"dataset": ds, "fusion": "tin", "heads": None, "enhanced": False, "seed": s}
            for ds in ("d1", "d2") for s in (1, 2, 3)]
    dev_f1 = {("d1", 1): 50.0, ("d1", 2): 60.0, ("d1", 3): 60.0, ("d2", 1): 70.0, ("d2", 2): 10.0, ("d2", 3): None}
    for r in runs:
        folder = tmp_path / r["dataset"] / sweep.run_name("t", r)
        folder.mkdir(parents=True)
        f1 = dev_f1[r["dataset"], r["seed"]]
        config = {"args": {}} | ({"summary": {"dev_triplet_f1": f1}} if f1 is not None else {})  # None: unfinished
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "best.safetensors").write_bytes(b"w")
    removed = sweep.keep_best_checkpoints(str(tmp_path), runs, "t")
    left = sorted(os.path.relpath(p, tmp_path) for p in glob.glob(str(tmp_path / "*" / "*" / "best.safetensors")))
    assert left == ["d1/t-tin-seed2/best.safetensors", "d2/t-tin-seed1/best.safetensors",
                    "d2/t-tin-seed3/best.safetensors"], removed  # the tie: the first; the unfinished run: untouched
    assert sweep.keep_best_checkpoints(str(tmp_path), runs, "t") == []


@pytest.mark.parametrize("keep,no_checkpoint", [(None, False), ("best", False), ("all", False), ("none", True)])
def test_sweep_keep_checkpoints_none_passes_no_checkpoint(tmp_path, keep, no_checkpoint):
    argv = ["scripts/sweep.py", "--datasets", "toy", "--fusions", "tin", "--results_dir", str(tmp_path), "--dry_run"]
    res = run([sys.executable, *argv, *(["--keep_checkpoints", keep] if keep else [])])
    commands = [line for line in res.stdout.splitlines() if "train.py" in line]
    assert len(commands) == 1 and ("--no_checkpoint" in commands[0]) == no_checkpoint
    assert sweep_module().parse([])[0].keep_checkpoints == "best"
