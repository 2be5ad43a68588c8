"""Bad input to the command-line tools: one line naming the file (and line or sentence) or the flag,
a non-zero exit, no traceback (unless --debug); run folders that survive kills."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from helpers import run, train_cmd


def fails_with_one_line(cmd, *expected, **kw) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, **kw)
    assert res.returncode != 0, res.stdout[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    assert "RESULT" not in res.stdout
    return errors[0]


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, toy_files, tmp_path_factory):
    """A finished 1-epoch run with its checkpoint. --amp fp16 is ignored on CPU with a warning, logged
    before the run folder exists."""
    out = tmp_path_factory.mktemp("runs")
    run(train_cmd(tiny_bert_dir, toy_files, out, "--run_name", "r", "--epochs", "1", "--amp", "fp16"))
    return os.path.join(out, "toy", "r")


def copy_run(trained, tmp_path) -> str:
    dst = str(tmp_path / "copy")
    shutil.copytree(trained, dst)
    return dst


def test_warnings_before_the_run_folder_reach_train_log_and_config_records_the_environment(trained):
    log = open(os.path.join(trained, "train.log"), encoding="utf-8").read()
    assert "--amp fp16 ignored on CPU" in log and "RESULT" in log
    env = json.load(open(os.path.join(trained, "config.json")))["environment"]
    assert {"torch", "transformers", "device", "commit", "dirty", "spacy", "spacy_pipeline",
            "spacy_pipeline_version"} <= set(env)


@pytest.mark.parametrize("split", ["train", "dev"])
def test_an_empty_split_stops_before_training(tiny_bert_dir, toy_files, tmp_path, split):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    files = dict(toy_files, **{split: str(empty)})
    fails_with_one_line(train_cmd(tiny_bert_dir, files, tmp_path, "--run_name", "e"), "empty.json",
                        f"no usable sentence in the {split} split")
    assert not os.path.exists(os.path.join(tmp_path, "toy", "e", "best.safetensors"))


def test_data_errors_are_one_line(tiny_bert_dir, toy_files, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"tokens": ["a"], "entities": 5, "sentiments": []}]')
    fails_with_one_line(train_cmd(tiny_bert_dir, dict(toy_files, train=str(bad)), tmp_path),
                        "bad.json[sentence #0]", "'entities' must be a list")
    fails_with_one_line(train_cmd(tiny_bert_dir, dict(toy_files, dev=str(tmp_path / "nope.json")), tmp_path),
                        "nope.json", "not found")
    fails_with_one_line(train_cmd(tiny_bert_dir, dict(toy_files, test=str(tmp_path)), tmp_path), "is a folder")
    (tmp_path / "broken.json").write_text('[{"tokens": ')
    fails_with_one_line(train_cmd(tiny_bert_dir, dict(toy_files, train=str(tmp_path / "broken.json")), tmp_path),
                        "broken.json:1", "malformed JSON")
    fails_with_one_line(train_cmd(str(tmp_path / "no_encoder"), toy_files, tmp_path), "no_encoder: no such folder")


def test_debug_shows_the_traceback(tiny_bert_dir, toy_files, tmp_path):
    cmd = train_cmd(tiny_bert_dir, dict(toy_files, dev=str(tmp_path / "nope.json")), tmp_path, "--debug")
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode != 0 and "Traceback" in res.stderr and "DataFileError" in res.stderr


def test_broken_run_folders_are_one_line(trained, tmp_path):
    predict = [sys.executable, "predict.py", "--input", "-", "--device", "cpu", "--checkpoint"]
    text = {"input": "The soup was cold .\n"}
    os.makedirs(tmp_path / "empty_run")
    fails_with_one_line([sys.executable, "train.py", "--eval_only", "--checkpoint", str(tmp_path / "empty_run")],
                        "config.json: no such file")
    truncated = copy_run(trained, tmp_path / "t")
    with open(os.path.join(truncated, "best.safetensors"), "r+b") as f:
        f.truncate(200)
    fails_with_one_line(predict + [truncated], "best.safetensors", "not a readable safetensors file", **text)
    tampered = copy_run(trained, tmp_path / "c")
    cfg = json.load(open(os.path.join(tampered, "config.json")))
    cfg["model"]["hidden_dim"] = 24
    json.dump(cfg, open(os.path.join(tampered, "config.json"), "w"))
    fails_with_one_line(predict + [tampered], "weights do not match the model in config.json", **text)


def test_corrupt_resume_state_is_one_line(tiny_bert_dir, toy_files, trained, tmp_path):
    folder = tmp_path / "toy" / "r"
    shutil.copytree(trained, folder)
    cfg = json.load(open(folder / "config.json"))
    cfg.pop("summary")  # an unfinished run
    json.dump(cfg, open(folder / "config.json", "w"))
    (folder / "state.pt").write_bytes(b"PK\x03\x04 not really a zip")
    fails_with_one_line(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "r", "--epochs", "1", "--amp",
                                  "fp16", "--resume"), "state.pt", "unreadable resume state")


def test_kill_during_the_first_state_write_then_resume(tiny_bert_dir, toy_files, tmp_path):
    """A SIGKILL while epoch 1's state.pt was written leaves metrics.jsonl's epoch-1 line (written by
    earlier versions before the state), no state.pt and the temporary file. --resume starts from
    epoch 1 again: the history holds each epoch once and the temporary file is gone."""
    folder = tmp_path / "toy" / "k"
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "from": "the killed attempt"}) + "\n")
    (folder / "state.pt.tmp4242").write_bytes(b"x" * 1000)
    run(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "k", "--epochs", "2", "--resume"))
    lines = [json.loads(x) for x in open(folder / "metrics.jsonl")]
    assert [r["epoch"] for r in lines] == [1, 2] and all("from" not in r for r in lines)
    assert not (folder / "state.pt.tmp4242").exists()


def test_resume_of_a_finished_run_removes_a_leftover_state(tiny_bert_dir, toy_files, trained, tmp_path):
    """A kill between the final config write (with the summary) and the removal of state.pt leaves a
    finished run with its resume state; --resume reports the run as finished and removes the state."""
    folder = tmp_path / "toy" / "r"
    shutil.copytree(trained, folder)
    (folder / "state.pt").write_bytes(b"a leftover resume state")
    res = run(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "r", "--epochs", "1", "--amp", "fp16",
                        "--resume"))
    assert "already finished" in res.stdout + res.stderr
    assert not (folder / "state.pt").exists()


def test_predict_checks_its_output_first_and_reports_bad_lines(trained, tmp_path):
    predict = [sys.executable, "predict.py", "--device", "cpu"]
    fails_with_one_line(predict + ["--checkpoint", str(tmp_path / "no_run"), "--input", "-", "--output",
                                   str(tmp_path / "no_folder" / "out.jsonl")], "--output", "does not exist",
                        input="x\n")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    fails_with_one_line(predict + ["--checkpoint", trained, "--input", str(binary)], "bin.txt", "not UTF-8")
    long_line = " ".join(["word"] * 300)  # the tiny encoder takes 128 positions
    lines = f"The soup was cold .\n{long_line}\nGreat staff .\n"
    out = tmp_path / "out.jsonl"
    res = subprocess.run(predict + ["--checkpoint", trained, "--input", "-", "--output", str(out)], input=lines,
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = [json.loads(x) for x in open(out)]
    assert [r["line"] for r in recs] == [1, 2, 3]
    assert "error" not in recs[0] and "triplets" in recs[2]
    assert "<stdin>:2" in recs[1]["error"] and "over the encoder's limit" in recs[1]["error"]
    assert "<stdin>:2" in res.stderr
    fails_with_one_line(predict + ["--checkpoint", trained, "--input", "-", "--on_bad_example", "error"],
                        "<stdin>:2", "over the encoder's limit", input=lines)
