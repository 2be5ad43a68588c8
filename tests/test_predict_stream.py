"""predict.py at scale (issue #25 item 9): the input is read, predicted and written a chunk at a time
into a temporary file beside --output (renamed at the end; removed on an error, Ctrl-C or SIGTERM), a
progress bar and --threads; --output replaces only a regular file (keeping its mode); a line that is
not UTF-8 is one bad line, not a lost job; config.json's decoding settings are checked like the flags."""
import glob
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

import predict
from aste import Predictor
from aste.runs import RunFolderError
from conftest import ROOT
from helpers import run, train_cmd

LINES = ["The soup was cold .", "", "Great sushi and friendly staff .", '{"tokens": ["Cheap", "beer", "."], "id": 3}',
         "The bread came warm .####[([1], [3], 'POS')]", "Lovely terrace , awful coffee ."]


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, toy_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run(train_cmd(tiny_bert_dir, toy_files, out, "--run_name", "r", "--epochs", "1"))
    return os.path.join(out, "toy", "r")


def cli(trained, inp, out, *extra, capsys=None):
    """predict.py in this process: (exit status, stderr lines)."""
    rc = predict.run_cli(predict.main, ["--checkpoint", trained, "--input", str(inp), "--output", str(out),
                                        "--device", "cpu", *extra])
    return rc, (capsys.readouterr().err.splitlines() if capsys else [])


def text_file(path, lines):
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return path


def watch_predict_calls(monkeypatch, on_call):
    """Predictor.predict calls on_call(k) before the k-th call (1-based)."""
    calls, original = [], Predictor.predict

    def wrapped(self, *a, **k):
        calls.append(1)
        on_call(len(calls))
        return original(self, *a, **k)
    monkeypatch.setattr(Predictor, "predict", wrapped)
    return calls


def test_records_are_written_chunk_by_chunk_into_a_temporary_file(trained, tmp_path, monkeypatch):
    inp = text_file(tmp_path / "in.txt", LINES)
    rc, _ = cli(trained, inp, tmp_path / "whole.jsonl")
    assert rc == 0
    out, seen = tmp_path / "out.jsonl", {}

    def look(k):
        seen[k] = (out.exists(), [open(t).read() for t in glob.glob(f"{out}.tmp*")])
    monkeypatch.setattr(predict, "CHUNK_LINES", 2)
    calls = watch_predict_calls(monkeypatch, look)
    assert cli(trained, inp, out)[0] == 0
    assert len(calls) == 3 and out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    exists, temps = seen[2]  # while the 2nd chunk is predicted: chunk 1's record is in the temporary file
    assert not exists and len(temps) == 1 and [json.loads(x)["line"] for x in temps[0].splitlines()] == [1]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["line"] for r in recs] == [1, 3, 4, 5, 6] and recs[2]["id"] == 3 and "gold" in recs[3]
    assert not glob.glob(str(tmp_path / "*.tmp*"))


def test_ctrl_c_keeps_the_old_output_and_removes_the_temporary_file(trained, tmp_path, monkeypatch, capsys):
    inp, out = text_file(tmp_path / "in.txt", LINES), tmp_path / "out.jsonl"
    out.write_text("old\n")

    def interrupt(k):
        if k == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(predict, "CHUNK_LINES", 2)
    watch_predict_calls(monkeypatch, interrupt)
    rc, err = cli(trained, inp, out, capsys=capsys)
    assert rc == 130 and out.read_text() == "old\n" and not glob.glob(str(tmp_path / "*.tmp*"))
    assert [x for x in err if x.startswith("error:")] == [f"error: interrupted; {out} not written"]


def test_sigterm_mid_stream_removes_the_temporary_file(trained, tmp_path):
    """A real process fed through a pipe: the first chunk reaches the temporary file while the input is
    still open; SIGTERM then removes it and writes no output."""
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "predict.py", "--checkpoint", trained, "--input", "-", "--output",
                             str(out), "--device", "cpu", "--threads", "1"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.stdin.write(("Good food .\n" * (predict.CHUNK_LINES + 1)).encode())
    proc.stdin.flush()
    deadline, temp = time.time() + 120, f"{out}.tmp{proc.pid}"
    while time.time() < deadline and not (os.path.exists(temp) and os.path.getsize(temp) > 0):
        time.sleep(0.1)
    written = os.path.exists(temp) and os.path.getsize(temp) > 0
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    proc.stdin.close()
    assert written, proc.stderr.read().decode()[-2000:]
    assert proc.returncode == 143 and not out.exists() and not glob.glob(str(tmp_path / "*.tmp*"))


def test_progress_bar_and_threads(trained, tmp_path, capsys):
    inp, out = text_file(tmp_path / "in.txt", LINES), tmp_path / "out.jsonl"
    threads = torch.get_num_threads()
    try:
        rc, err = cli(trained, inp, out, "--progress", "--threads", "1", capsys=capsys)
        assert rc == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert any("100%" in x and "6/6" in x and "lines" in x for x in "\n".join(err).split("\r")), err
    for flags in ([], ["--no-progress"]):  # by default, only on a terminal (pytest's stderr is none)
        rc, err = cli(trained, inp, out, *flags, capsys=capsys)
        assert rc == 0 and not any("lines/s" in x for x in err), err
    with pytest.raises(SystemExit, match="error: --threads must be >= 1"):
        cli(trained, inp, out, "--threads", "0")


def one_error_line(err) -> str:
    errors = [x for x in err if x.startswith("error:")]
    assert len(errors) == 1 and len(err) == 1, err
    return errors[0]


def test_output_is_new_or_an_existing_regular_file_whose_mode_is_kept(trained, tmp_path, capsys):
    inp = text_file(tmp_path / "in.txt", LINES)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = tmp_path / "target.jsonl"
    target.write_text("keep\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    for path, what in ((fifo, "not a regular file"), (link, "a symbolic link"), (tmp_path, "is a folder")):
        rc, err = cli(trained, inp, path, capsys=capsys)
        assert rc == 2 and f"--output {path}: " in one_error_line(err) and what in err[0]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.path.islink(link) and target.read_text() == "keep\n"
    existing = tmp_path / "existing.jsonl"
    existing.write_text("old\n")
    os.chmod(existing, 0o640)
    umask = os.umask(0o022)
    try:
        assert cli(trained, inp, existing)[0] == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640 and existing.read_text().count("\n") == 5


def test_a_line_that_is_not_utf8_is_one_bad_line(trained, tmp_path, monkeypatch, capsys):
    data = b"The soup was cold .\ncaf\xe9 au lait .\nGreat staff .\n"
    (tmp_path / "in.txt").write_bytes(data)
    for source, inp in (("<stdin>", "-"), (str(tmp_path / "in.txt"), tmp_path / "in.txt")):
        for mode in ("skip", "error"):
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
            out = tmp_path / f"out-{mode}.jsonl"
            rc, err = cli(trained, inp, out, "--on_bad_example", mode, capsys=capsys)
            if mode == "error":
                assert rc == 2 and one_error_line(err).startswith(f"error: {source}:2: not UTF-8 text")
                assert not out.exists()
                continue
            recs = [json.loads(x) for x in out.read_text().splitlines()]
            out.unlink()
            assert rc == 0 and [r["line"] for r in recs] == [1, 2, 3] and "triplets" in recs[2]
            assert recs[1]["error"].startswith(f"{source}:2: not UTF-8 text") and set(recs[1]) == {"line", "error"}
            assert any(f"{source}:2" in x for x in err)


def test_a_utf8_bom_is_dropped_and_line_ends_are_those_of_text_mode(trained, tmp_path, capsys):
    inp, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    inp.write_bytes(b'\xef\xbb\xbf{"tokens": ["Cheap", "beer", "."], "id": 7}\r\nGood food .\rNice view .\n')
    assert cli(trained, inp, out, capsys=capsys)[0] == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["line"], r["tokens"]) for r in recs] == [(1, ["Cheap", "beer", "."]), (2, ["Good", "food", "."]),
                                                        (3, ["Nice", "view", "."])] and recs[0]["id"] == 7
    inp.write_bytes("The soup was cold .\n".encode("utf-16"))  # a UTF-16 file: refused whole
    rc, err = cli(trained, inp, out, capsys=capsys)
    assert rc == 2 and "not UTF-8 text" in one_error_line(err) and "UTF-16" in err[0]


def tampered(trained, tmp_path, section, key, value):
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    path = folder / "config.json"
    config = json.loads(path.read_text())
    if section == "decoding":
        config["decoding"] = {k: config["args"][k] for k in ("max_span_size", "sen_filter_threshold", "max_pairs",
                                                             "overlap_filter")}
    if value is None:
        del config[section][key]
    else:
        config[section][key] = value
    path.write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize("section, key, value, message", [
    ("args", "max_span_size", "8", "'args.max_span_size' must be an integer >= 1 (got '8')"),
    ("args", "max_span_size", -5, "'args.max_span_size' must be an integer >= 1 (got -5)"),
    ("args", "max_pairs", None, "'args.max_pairs' is missing (it must be an integer >= 1)"),
    ("args", "overlap_filter", "bogus", "'args.overlap_filter' must be one of none, spans, triplets (got 'bogus')"),
    ("args", "sen_filter_threshold", 1.5, "'args.sen_filter_threshold' must be a number in [0, 1) (got 1.5)"),
    ("args", "sen_filter_threshold", True, "'args.sen_filter_threshold' must be a number in [0, 1) (got True)"),
    ("decoding", "overlap_filter", None,
     "'decoding.overlap_filter' is missing (it must be one of none, spans, triplets)"),
    ("decoding", "max_pairs", 0, "'decoding.max_pairs' must be an integer >= 1 (got 0)"),
])
def test_decoding_settings_of_config_json_are_checked_like_the_flags(trained, tmp_path, section, key, value, message):
    folder = tampered(trained, tmp_path, section, key, value)
    with pytest.raises(RunFolderError) as err:
        Predictor.from_pretrained(folder, device="cpu")
    assert str(err.value) == f"{os.path.join(folder, 'config.json')}: {message}"


def test_a_bad_config_json_is_one_line_and_a_run_before_overlap_filter_decodes_with_none(trained, tmp_path, capsys):
    folder = tampered(trained, tmp_path, "args", "max_span_size", "8")
    rc, err = cli(folder, text_file(tmp_path / "in.txt", LINES), "-", capsys=capsys)
    assert rc == 2 and one_error_line(err).startswith(f"error: {os.path.join(folder, 'config.json')}: ")
    shutil.rmtree(folder)
    old = tampered(trained, tmp_path, "args", "overlap_filter", None)
    assert Predictor.from_pretrained(old, device="cpu").overlap == "none"
