"""Runs nobody watches: a time budget that stops cleanly and resumes to the same numbers, early
stopping on dev, resume refusing changed data, out-of-memory as one line, --config with another fusion."""
import json
import logging
import os
import subprocess
import sys
import types

import pytest

import train
from aste.cli import run_cli
from aste.trainer import Trainer
from conftest import ROOT
from helpers import run, train_cmd
from Parameter import parse_args

TIMING = ("train_seconds", "sentences_per_second", "dev_seconds", "test_seconds", "peak_rss_mb", "peak_cuda_mb")


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def start(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_time_budget_stops_with_status_75_and_resumes_to_the_same_numbers(tiny_bert_dir, toy_files, tmp_path):
    run(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "alone"))
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "budget", "--time_budget", "1e-9")
    res = start(cmd)  # the first epoch always runs; the next would end after the budget
    assert res.returncode == 75, res.stderr[-2000:]
    line = [x for x in res.stdout.splitlines() if "time budget: stopped after epoch 1 of 3" in x]
    assert len(line) == 1 and line[0].endswith("--time_budget 1e-9 --resume")
    run_dir = os.path.join(tmp_path, "toy", "budget")
    assert os.path.exists(os.path.join(run_dir, "state.pt")) and len(metrics(run_dir)) == 1
    codes = [start(cmd + ["--resume"]).returncode for _ in range(2)]  # one epoch per process, as budgeted
    assert codes == [75, 0]
    assert metrics(run_dir) == metrics(os.path.join(tmp_path, "toy", "alone"))
    assert json.load(open(os.path.join(run_dir, "config.json")))["summary"]["stopped"] == "finished"


def test_epochs_default_to_the_sentence_budget_and_a_finished_run_resumes_as_finished(tiny_bert_dir, toy_files,
                                                                                        tmp_path):
    from Parameter import epochs_for
    assert [epochs_for(25_320, n) for n in (1266, 906, 605, 857)] == [20, 28, 42, 30]  # 14res 14lap 15res 16res
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "b")
    del cmd[cmd.index("--epochs"):cmd.index("--epochs") + 2]
    n_train = len(json.load(open(toy_files["train"])))
    cmd += ["--sentence_budget", str(2 * n_train + n_train // 3)]  # 2.33 epochs' worth: 2
    res = run(cmd)
    run_dir = os.path.join(tmp_path, "toy", "b")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["args"]["epochs"] == 2 and config["summary"]["epochs_run"] == 2 and len(metrics(run_dir)) == 2
    assert f"2 epochs: --sentence_budget {2 * n_train + n_train // 3} over {n_train} training sentences" in res.stdout
    assert "already finished" in run(cmd + ["--resume"]).stdout
    res = start(cmd + ["--resume", "--epochs", "3"])
    assert res.returncode != 0 and "--epochs was 2, now 3" in res.stderr
    # --config derives the number again from its budget (here another one), rather than copying 2
    assert config["epochs_from_budget"] is True
    run([sys.executable, "train.py", "--config", os.path.join(run_dir, "config.json"), "--run_name", "c",
         "--sentence_budget", str(3 * n_train)])
    assert json.load(open(os.path.join(tmp_path, "toy", "c", "config.json")))["args"]["epochs"] == 3
    # a run made before --sentence_budget existed resumes with its own number of epochs, no flag needed
    res = start(cmd[:-2] + ["--run_name", "old", "--epochs", "3", "--time_budget", "1e-9"])
    assert res.returncode == 75, res.stderr[-2000:]
    old = os.path.join(tmp_path, "toy", "old", "config.json")
    saved = json.load(open(old))
    del saved["args"]["sentence_budget"]
    json.dump(saved, open(old, "w"))
    res = run(cmd[:-2] + ["--run_name", "old", "--resume"])
    assert "3 epochs, as the run in" in res.stdout and len(metrics(os.path.dirname(old))) == 3


def test_patience_stops_when_dev_stops_improving(tiny_bert_dir, toy_files, tmp_path):
    # learning rates too small to change dev F1: epoch 1 is the best, and epoch 1 + patience the last
    run(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "p", "--epochs", "6", "--patience", "2",
                  "--lr", "1e-12", "--task_lr", "1e-12"))
    run_dir = os.path.join(tmp_path, "toy", "p")
    summary = json.load(open(os.path.join(run_dir, "config.json")))["summary"]
    assert (summary["stopped"], summary["best_epoch"], summary["epochs_run"]) == ("patience", 1, 3)
    assert len(metrics(run_dir)) == 3 and not os.path.exists(os.path.join(run_dir, "state.pt"))
    assert "stopped early: dev triplet F1 has not improved for 2 epochs" in open(os.path.join(run_dir, "train.log")).read()


def test_resume_refuses_changed_training_data(tiny_bert_dir, toy_files, tmp_path):
    train_file = tmp_path / "train.json"
    train_file.write_text(open(toy_files["train"]).read())
    files = dict(toy_files, train=str(train_file))
    cmd = train_cmd(tiny_bert_dir, files, tmp_path, "--run_name", "d", "--time_budget", "1e-9")
    assert start(cmd).returncode == 75
    saved = json.load(open(os.path.join(tmp_path, "toy", "d", "config.json")))
    assert saved["data"]["train"]["bytes"] == os.path.getsize(train_file) and len(saved["data"]["train"]["sha256"]) == 64
    moved = tmp_path / "moved.json"  # another path, same content: resumes (Kaggle paths change)
    os.rename(train_file, moved)
    assert start(train_cmd(tiny_bert_dir, dict(files, train=str(moved)), tmp_path, "--run_name", "d",
                           "--time_budget", "1e-9", "--resume")).returncode == 75
    items = json.load(open(moved))
    moved.write_text(json.dumps(items[:3]))
    res = start(train_cmd(tiny_bert_dir, dict(files, train=str(moved)), tmp_path, "--run_name", "d", "--resume"))
    errors = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert res.returncode != 0 and "Traceback" not in res.stderr and len(errors) == 1
    assert "is not the one the run" in errors[0] and "moved.json" in errors[0]


@pytest.mark.parametrize("where", ["build", "step"])
def test_cpu_allocation_failure_is_the_out_of_memory_line(tiny_bert_dir, toy_files, tmp_path, monkeypatch, capsys, where):
    def fail(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 36000000000000 bytes. Error code 12 (Cannot allocate memory)")
    if where == "build":
        monkeypatch.setattr(train, "D2E2S", fail)
    else:
        monkeypatch.setattr(train.D2E2S, "forward", fail)
    code = run_cli(train.main, train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", where)[2:])
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: out of memory")
    assert ("building the model" if where == "build" else "in training on a batch") in err[0]


def test_config_of_another_fusion_drops_its_options_with_a_logged_line(tmp_path, caplog):
    saved = vars(parse_args(["--use_cross_attention", "--cross_attention_heads", "4"]))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"args": saved}))
    with caplog.at_level(logging.INFO, logger="aste"):
        args = parse_args(["--config", str(path), "--fusion", "tin"])
    assert args.fusion == "tin" and args.cross_attention_heads is None and args.fusion_output_block is None
    assert "--cross_attention_heads 4 dropped (--fusion tin does not take it)" in caplog.text
    assert parse_args(["--config", str(path), "--fusion", "lightweight"]).cross_attention_heads == 4


def test_epoch_line_shows_peak_gpu_memory_when_there_is_one(caplog, monkeypatch):
    monkeypatch.setattr("aste.trainer.format_metrics", lambda m: "")
    fake = types.SimpleNamespace(args=types.SimpleNamespace(epochs=3), writer=None)
    record = {"epoch": 1, "loss": 0.5, "train_seconds": 1.0, "sentences_per_second": 9.0, "dev_seconds": 0.1,
              "test_seconds": 0.1, "peak_rss_mb": 900.0, "dev": {}, "test": {}}
    with caplog.at_level(logging.INFO, logger="aste"):
        Trainer.log_epoch(fake, record | {"peak_cuda_mb": 5120.4}, False)
        Trainer.log_epoch(fake, record, False)
    lines = [r.getMessage() for r in caplog.records if "| loss" in r.getMessage()]
    assert "peak GPU 5120 MB" in lines[0] and "GPU" not in lines[1]


def test_sweep_time_budget_stops_with_75_and_the_same_command_continues(tiny_bert_dir, toy_files, tmp_path):
    results = tmp_path / "res"
    sweep = [sys.executable, "scripts/sweep.py", "--datasets", "toy", "--fusions", "tin", "--seeds", "1", "2",
             "--name", "b", "--results_dir", str(results), "--summary", str(tmp_path / "s.md"),
             "--plot", str(tmp_path / "s.png")]
    extra = ["--", "--pretrained_deberta_name", tiny_bert_dir, "--train_file", toy_files["train"], "--dev_file",
             toy_files["dev"], "--test_file", toy_files["test"], "--epochs", "2", "--batch_size", "4",
             "--hidden_dim", "16", "--attention_heads", "2", "--device", "cpu", "--no_checkpoint"]
    # 0.7 s for the sweep: the first run's first epoch always runs, then it stops; the second never starts
    first = start(sweep + ["--time_budget", "0.0002"] + extra)
    assert first.returncode == 75 and "STOPPED (time budget) toy/b-tin-seed1" in first.stdout, first.stdout
    assert not os.path.exists(results / "toy" / "b-tin-seed2")
    assert len(metrics(results / "toy" / "b-tin-seed1")) == 1
    again = start(sweep + extra)
    assert again.returncode == 0 and again.stdout.count("ok toy/") == 2, again.stdout
    assert [len(metrics(results / "toy" / f"b-tin-seed{s}")) for s in (1, 2)] == [2, 2]
