"""Run folders written before the fusion registry (model config keys named otherwise, fusion options as
fields of their own, no --patience) still load: Predictor, --eval_only and --config."""
import json
import os
import subprocess
import sys

from aste import Predictor
from aste.runs import model_config
from conftest import ROOT
from helpers import run, train_cmd
from Parameter import parse_args

OLD_NAMES = {"drop_out_rate": "lstm_dropout", "use_enhanced_semgcn": "enhanced_semgcn"}


def as_before_the_registry(config: dict) -> dict:
    """config.json as the code before the fusion registry wrote it."""
    model = {OLD_NAMES.get(k, k): v for k, v in config["model"].items() if k != "fusion_options"}
    model.update(config["model"]["fusion_options"])
    args = {k: v for k, v in config["args"].items() if k not in ("patience", "time_budget")}
    return config | {"model": model, "args": args}


def test_an_old_run_folder_predicts_evaluates_and_configures(tiny_bert_dir, toy_files, tmp_path):
    run(train_cmd(tiny_bert_dir, toy_files, tmp_path, "--run_name", "r", "--epochs", "1", "--fusion", "cross_attention",
                  "--cross_attention_heads", "4"))
    run_dir = os.path.join(tmp_path, "toy", "r")
    sentences = ["The pasta was delicious but the waiter was rude .", "Great sushi ."]
    before = Predictor.from_run(run_dir, device="cpu").predict(sentences)
    path = os.path.join(run_dir, "config.json")
    old = as_before_the_registry(json.load(open(path)))
    json.dump(old, open(path, "w"))
    assert Predictor.from_run(run_dir, device="cpu").predict(sentences) == before
    res = subprocess.run([sys.executable, "train.py", "--eval_only", "--checkpoint", run_dir, "--test_file",
                          toy_files["test"], "--device", "cpu"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    args = parse_args(["--config", path])
    assert (args.fusion, args.cross_attention_heads, args.fusion_output_block, args.patience) == ("cross_attention", 4, True, 0)


def test_committed_runs_keep_their_fusion_options():
    config = json.load(open(os.path.join(ROOT, "Results", "14res", "spans-cross_attention-h4-seed42", "config.json")))
    cfg = model_config(config["model"])
    assert cfg.fusion_options == {"cross_attention_heads": 4, "share_cross_attention_weights": False,
                                  "cross_attention_window": 0, "fusion_output_block": True}
    assert cfg.drop_out_rate == 0.5 and cfg.use_enhanced_semgcn is False
    lightweight = {"fusion": "lightweight", "encoder_dim": 8, "hidden_dim": 4, "cross_attention_heads": None}
    assert model_config(lightweight).fusion_options == {"cross_attention_heads": 4, "cross_attention_window": 0,
                                                       "fusion_output_block": False}  # the defaults of the time


def test_a_committed_tin_run_resumes_without_flags_for_fusion_options_it_never_had():
    from aste.runs import resume_conflicts
    from Parameter import build_parser
    from aste.runs import RunFolder
    from train import set_epochs
    folder = RunFolder(os.path.join(ROOT, "Results", "14res", "spans-tin-seed42"))
    config = folder.read_config()
    saved = config["args"]
    argv = ["--dataset", "14res", "--pretrained_deberta_name", "all-MiniLM-L6-v2", "--resume", "--threads", "1"]
    defaults = vars(build_parser().parse_args([]))

    def resumed(argv):  # the number of epochs as train.py sets it: the run predates --sentence_budget
        args = parse_args(argv)
        assert not set_epochs(args, folder, None, config) and args.epochs == saved["epochs"] == 20
        return args
    # it ran before --patience existed, i.e. without early stopping, and at the threshold of its day
    # (CHANGELOG): those are the flags to give
    assert sorted(resume_conflicts(saved, resumed(argv), defaults)) == [
        "--patience was 0, now 10", "--sen_filter_threshold was 0.4, now 0.9"]
    old_defaults = ["--patience", "0", "--sen_filter_threshold", "0.4"]
    assert resume_conflicts(saved, resumed(argv + old_defaults), defaults) == []
