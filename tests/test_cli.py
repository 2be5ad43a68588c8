"""The command line end to end with a tiny encoder: flags, run-folder outputs, eval-only, predict,
reload in a fresh process, resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TOY
from helpers import run, train_cmd
from Parameter import parse_args


@pytest.mark.parametrize("argv,message", [
    (["--use_cross_attention", "--fusion", "lightweight"], "contradicts"),
    (["--cross_attention_heads", "4"], "--cross_attention_heads is not an option of --fusion tin"),
    (["--fusion", "tin", "--cross_attention_window", "3"], "not an option of --fusion tin"),
    (["--fusion", "lightweight", "--share_cross_attention_weights"], "not an option of --fusion lightweight"),
    (["--fusion", "cross_attention", "--cross_attention_heads", "0"], "--cross_attention_heads must be >= 1"),
    (["--emb_dim", "768", "--deberta_feature_dim", "384"], "disagree"),
    (["--neg_entity_count", "-5"], "neg_entity_count"),
    (["--eval_only"], "needs --checkpoint"),
    (["--amp", "bf16", "--device", "cpu"], "CUDA"),
])
def test_bad_flag_combinations_fail_before_building(argv, message):
    with pytest.raises(SystemExit, match=message):
        parse_args(argv)


def test_use_cross_attention_alias_and_default_heads():
    args = parse_args(["--use_cross_attention"])
    assert args.fusion == "cross_attention" and args.cross_attention_heads == 8 and args.fusion_output_block
    assert parse_args(["--fusion", "lightweight"]).cross_attention_heads == 4
    assert parse_args([]).fusion == "tin"


def test_heads_must_divide_width(tiny_bert_dir, toy_files, tmp_path):
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--fusion", "cross_attention", "--cross_attention_heads", "5")
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode != 0 and "does not divide the model width 32" in res.stderr


def metrics_lines(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = [json.loads(x) for x in f]
    for r in lines:  # timings and memory differ between runs; everything else must not
        for k in ("train_seconds", "sentences_per_second", "dev_seconds", "test_seconds", "peak_rss_mb"):
            r.pop(k)
    return lines


def test_train_outputs_eval_only_predict_and_reload(tiny_bert_dir, toy_files, tmp_path):
    res = run(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "r", "--tensorboard"))
    run_dir = os.path.join(tmp_path, "toy", "r")
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(run_dir, "tensorboard")))
    for name in ("config.json", "metrics.jsonl", "best.safetensors", "test_predictions.jsonl", "encoder"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert not os.path.exists(os.path.join(run_dir, "state.pt"))  # removed once the run finished
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    assert cfg["args"]["fusion"] == "tin" and cfg["parameters"]["fusion"] > 0 and cfg["summary"]["best_epoch"] >= 1
    assert "RESULT" in res.stdout and "best-on-test, for comparison" in res.stdout
    lines = metrics_lines(run_dir)
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    best = cfg["summary"]["best_epoch"]
    assert lines[best - 1]["dev"]["triplet"]["f1"] == max(r["dev"]["triplet"]["f1"] for r in lines)
    assert cfg["summary"]["test_triplet_f1"] == lines[best - 1]["test"]["triplet"]["f1"]
    preds = [json.loads(x) for x in open(os.path.join(run_dir, "test_predictions.jsonl"))]
    assert len(preds) == len(TOY) and all({"tokens", "gold", "predicted"} <= set(p) for p in preds)

    # eval-only in a fresh process reproduces the best epoch's test metrics
    run([sys.executable, "train.py", "--eval_only", "--checkpoint", run_dir, "--test_file", toy_files["test"],
         "--device", "cpu"])
    ev = json.load(open(os.path.join(run_dir, "eval_test_metrics.json")))
    assert ev["metrics"]["triplet"] == lines[best - 1]["test"]["triplet"]
    # each epoch also records pair and triplet scores at the grid's other thresholds (a dev-chosen
    # threshold needs no checkpoint); eval-only with another --overlap_filter re-scores the run under it
    own_threshold = cfg["args"]["sen_filter_threshold"]
    assert own_threshold == parse_args([]).sen_filter_threshold
    grid = {f"sen_filter_threshold={t:g}" for t in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95) if t != own_threshold}
    assert all(set(r["decodings"]) == grid for r in lines)
    run([sys.executable, "train.py", "--eval_only", "--checkpoint", run_dir, "--test_file", toy_files["test"],
         "--device", "cpu", "--overlap_filter", "triplets"])
    ev = json.load(open(os.path.join(run_dir, "eval_test_triplets_metrics.json")))  # beside the first, not over it
    assert ev["decoding"]["overlap_filter"] == "triplets"
    assert ev["metrics"]["triplet"]["n_gold"] == lines[best - 1]["test"]["triplet"]["n_gold"]
    # so does another --sen_filter_threshold (calibrating it on dev takes several), each in files of its own
    run([sys.executable, "train.py", "--eval_only", "--checkpoint", run_dir, "--test_file", toy_files["test"],
         "--device", "cpu", "--sen_filter_threshold", "0.7"])
    ev = json.load(open(os.path.join(run_dir, "eval_test_sen_filter_threshold0.7_metrics.json")))
    assert ev["decoding"]["sen_filter_threshold"] == 0.7
    recorded = lines[best - 1]["decodings"]["sen_filter_threshold=0.7"]["test"]
    assert {k: ev["metrics"][k] for k in recorded} == recorded
    own = json.load(open(os.path.join(run_dir, "eval_test_metrics.json")))
    assert own["decoding"]["sen_filter_threshold"] == own_threshold and own["metrics"]["triplet"] == lines[best - 1]["test"]["triplet"]

    # predict on sentences that appear in no dataset, twice in fresh processes: identical output
    new = tmp_path / "new.txt"
    new.write_text("The ramen was rich but the waiter seemed bored .\n\n"
                   "Lovely terrace , awful coffee .\n"
                   '{"tokens": ["Cheap", "beer", "."]}\n'
                   "The soup was cold .####[([1], [3], 'NEG')]\n", encoding="utf-8")
    outs = []
    for k in range(2):
        out = tmp_path / f"pred{k}.jsonl"
        run([sys.executable, "predict.py", "--checkpoint", run_dir, "--input", str(new), "--output", str(out),
             "--device", "cpu"])
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    recs = [json.loads(x) for x in outs[0].splitlines()]
    assert [r["line"] for r in recs] == [1, 3, 4, 5]
    assert recs[0]["tokens"][:3] == ["The", "ramen", "was"] and recs[2]["tokens"] == ["Cheap", "beer", "."]
    assert recs[3]["gold"][0]["aspect"] == "soup"
    for r in recs:
        for t in r["triplets"]:
            assert t["sentiment"] in ("POS", "NEG", "NEU") and 0 <= t["aspect_span"][0] < t["aspect_span"][1] <= len(r["tokens"])
            assert t["aspect"] == " ".join(r["tokens"][t["aspect_span"][0]:t["aspect_span"][1]]) and 0 < t["score"] <= 1


def test_resume_after_sigkill_gives_identical_metrics(tiny_bert_dir, toy_files, tmp_path):
    extra = ("--epochs", "4", "--no_checkpoint")
    run(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "straight", *extra))
    cmd = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "killed", *extra)
    run_dir = os.path.join(tmp_path, "toy", "killed")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once epoch 2 is under way (epoch 1 saved)
        if os.path.exists(os.path.join(run_dir, "metrics.jsonl")) and open(os.path.join(run_dir, "metrics.jsonl")).read().count("\n") >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = open(os.path.join(run_dir, "metrics.jsonl")).read().count("\n")
    assert done < 4, "the run finished before it could be killed; make epochs longer"
    run(cmd + ["--resume"])
    assert metrics_lines(run_dir) == metrics_lines(os.path.join(tmp_path, "toy", "straight"))


def test_two_process_gloo_matches_one_process(tiny_bert_dir, toy_files, tmp_path):
    """torchrun --nproc_per_node=2 on CPU (gloo) with the same global batch gives the same metrics.
    All dropout is off (the tiny encoder's too), so both runs compute the same function."""
    from transformers import AutoConfig
    import shutil

    enc = tmp_path / "enc_nodrop"
    shutil.copytree(tiny_bert_dir, enc)
    cfg = AutoConfig.from_pretrained(enc)
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    cfg.save_pretrained(enc)
    nodrop = ("--drop_out_rate", "0", "--gcn_dropout", "0", "--prop_drop", "0", "--attention_dropout", "0",
              "--no_checkpoint", "--batch_size", "8", "--epochs", "2")
    run(train_cmd(str(enc), toy_files, tmp_path, "--run_name", "one", *nodrop))
    cmd = train_cmd(str(enc), toy_files, tmp_path, "--run_name", "two", *nodrop)
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"] + cmd[1:],
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    one = metrics_lines(os.path.join(tmp_path, "toy", "one"))
    two = metrics_lines(os.path.join(tmp_path, "toy", "two"))
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert a["dev"] == b["dev"] and a["test"] == b["test"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_sweep_skips_finished_and_summarize_writes_table_and_plot(tiny_bert_dir, toy_files, tmp_path):
    results = tmp_path / "res"
    sweep = [sys.executable, "scripts/sweep.py", "--datasets", "toy", "--fusions", "tin", "lightweight",
             "--seeds", "1", "2", "--name", "t", "--results_dir", str(results), "--parallel", "2",
             "--summary", str(tmp_path / "summary.md"), "--plot", str(tmp_path / "summary.png"), "--"]
    extra = ["--pretrained_deberta_name", tiny_bert_dir, "--train_file", toy_files["train"], "--dev_file",
             toy_files["dev"], "--test_file", toy_files["test"], "--epochs", "1", "--batch_size", "4",
             "--hidden_dim", "16", "--attention_heads", "2", "--device", "cpu",
             "--no_checkpoint"]
    res = run(sweep + extra)
    assert res.stdout.count("ok toy/") == 4, res.stdout
    table = (tmp_path / "summary.md").read_text()
    assert "| toy | tiny_bert" in table and "1, 2" in table and "±" in table
    assert (tmp_path / "summary.png").stat().st_size > 1000
    again = run(sweep + extra)
    assert again.stdout.count("done ") == 4 and "ok toy/" not in again.stdout


def test_resume_refuses_changed_flags(tmp_path):
    from aste.runs import resume_conflicts
    from Parameter import build_parser

    defaults = vars(build_parser().parse_args([]))
    saved = vars(parse_args(["--epochs", "5", "--lr", "2e-4"]))
    assert resume_conflicts(saved, parse_args(["--epochs", "5", "--lr", "2e-4", "--resume", "--threads", "2"]), defaults) == []
    assert resume_conflicts(saved, parse_args(["--epochs", "5", "--resume"]), defaults) == ["--lr was 0.0002, now 0.0001"]
    # a run started before a flag existed had that flag's default
    older = {k: v for k, v in saved.items() if k != "max_bad_steps"}
    assert resume_conflicts(older, parse_args(["--epochs", "5", "--lr", "2e-4", "--resume"]), defaults) == []
    assert resume_conflicts(older, parse_args(["--epochs", "5", "--lr", "2e-4", "--resume", "--max_bad_steps", "3"]),
                            defaults) == ["--max_bad_steps was 10, now 3"]


def test_git_commit_and_dirty_flag(tmp_path, monkeypatch):
    """config.json records the code's commit and whether the checkout had uncommitted changes."""
    import aste.environment as env

    def git(*args, cwd=tmp_path / "repo"):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                              capture_output=True, text=True).stdout.strip()
    pkg = tmp_path / "repo" / "aste"
    pkg.mkdir(parents=True)
    (pkg / "environment.py").write_text("x")
    (tmp_path / "repo" / "Results").mkdir()
    (tmp_path / "repo" / "Results" / "summary.png").write_text("plot")
    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "one")
    monkeypatch.setattr(env, "__file__", str(pkg / "environment.py"))
    assert env.git_commit() == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    # a sweep rewrites its summary plot in Results/ between runs: not a code change
    (tmp_path / "repo" / "Results" / "summary.png").write_text("another plot")
    assert env.git_commit()["dirty"] is False
    (pkg / "environment.py").write_text("y")
    assert env.git_commit()["dirty"] is True
    monkeypatch.setattr(env, "__file__", str(tmp_path / "nogit" / "aste" / "environment.py"))
    (tmp_path / "nogit" / "aste").mkdir(parents=True)
    assert env.git_commit() == {"commit": None, "dirty": None}
