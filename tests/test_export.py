"""Sharing a model (issue #24 item 8): a string is one sentence; Predictor.export writes a
self-contained folder with a model card; Predictor.from_pretrained loads it by path, a run folder,
or a Hugging Face Hub id (from the cache, offline); a Hub id that cannot be had is one line."""
import json
import os
import shlex
import shutil
import sys

import pytest
import torch

from aste import Predictor
from aste.runs import RunFolderError
from helpers import run, train_cmd

SENTENCES = ["The soup was cold .", "Great sushi and friendly staff .", "The bread came warm but the waiter was rude .",
             ["The", "wine", "list", "is", "average", "."]]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, toy_files, tmp_path_factory):
    """A finished tiny run that learnt enough to predict some triplets (15 epochs, no dropout, no warm-up),
    with a decoding setting that is not the default (its threshold)."""
    out = tmp_path_factory.mktemp("runs")
    run(train_cmd(tiny_bert_dir, toy_files, out, "--run_name", "r", "--epochs", "15", "--lr_warmup", "0", "--prop_drop",
                  "0", "--drop_out_rate", "0", "--sen_filter_threshold", "0.3"))
    return os.path.join(out, "toy", "r")


@pytest.fixture(scope="module")
def from_run(trained):
    return Predictor.from_run(trained, device="cpu")


@pytest.fixture(scope="module")
def exported(from_run, tmp_path_factory):
    return from_run.export(str(tmp_path_factory.mktemp("export") / "toy-model"))


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache of our own, HF_HUB_OFFLINE=1 (huggingface_hub read its environment
    at import: its constants are patched)."""
    import huggingface_hub.constants as hf
    cache = tmp_path / "hf_cache"
    for name, value in (("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", True)):
        monkeypatch.setattr(hf, name, value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def same_model(a: Predictor, b: Predictor) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    decoding = [(p.max_span_size, p.threshold, p.max_pairs, p.overlap) for p in (a, b)]
    assert decoding[0] == decoding[1]
    words = "The soup was cold but the staff were lovely .".split()
    ids = [p.tokenizer(words, is_split_into_words=True)["input_ids"] for p in (a, b)]
    assert ids[0] == ids[1]
    ours = a.predict(SENTENCES)
    assert b.predict(SENTENCES) == ours
    assert sum(len(r["triplets"]) for r in ours) > 0  # the comparison covers decoded triplets


def test_a_string_is_one_sentence(from_run):
    for mode in ("error", "skip"):
        out = from_run.predict("The soup was cold .", on_bad_example=mode)
        assert len(out) == 1 and out[0]["tokens"] == ["The", "soup", "was", "cold", "."]
        assert out[0]["sentence"] == "The soup was cold ." and "error" not in out[0]
    two = from_run.predict(["Good food .", ["Bad", "beer"]])
    assert [r["tokens"] for r in two] == [["Good", "food", "."], ["Bad", "beer"]]


def test_export_loads_by_path_with_identical_predictions_and_a_model_card(trained, from_run, exported):
    files = sorted(os.path.relpath(os.path.join(d, f), exported) for d, _, fs in os.walk(exported) for f in fs)
    assert {"config.json", "model.safetensors", "README.md", "encoder/config.json",
            "encoder/tokenizer_config.json"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".py")) or ".tmp" in f or ".old" in f], files
    config = json.load(open(os.path.join(exported, "config.json")))
    assert config["decoding"]["sen_filter_threshold"] == 0.3 and config["decoding"]["overlap_filter"] == "spans"
    same_model(from_run, Predictor.from_pretrained(exported, device="cpu"))
    same_model(from_run, Predictor.from_pretrained(trained, device="cpu"))  # a run folder, same entry point

    from huggingface_hub import ModelCard
    card, summary = ModelCard.load(os.path.join(exported, "README.md")), config["summary"]
    meta = card.data.to_dict()
    assert meta["tags"] == ["aspect-sentiment-triplet-extraction", "absa"] and meta["language"] == "en"
    assert meta["library_name"] and meta["license"] == "other" and meta["datasets"] and meta["metrics"] == ["f1"]
    scores = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert scores == {"test triplet F1": round(summary["test_triplet_f1"], 2),
                      "dev triplet F1": round(summary["dev_triplet_f1"], 2)}
    for f1 in (summary["test_triplet_f1"], summary["dev_triplet_f1"]):
        assert f"{f1:.2f}" in card.text
    command = card.text.split("```bash\n")[2].split("```")[0].replace(" \\\n    ", " ")
    assert command.startswith("python train.py --dataset toy --train_file ") and "--pretrained_deberta_name" in command
    assert "--sen_filter_threshold 0.3 " in command and "--epochs 15 " in command and "--seed" not in command
    from Parameter import parse_args  # the command gives back the run's flags
    assert vars(parse_args(shlex.split(command)[2:])) == config["args"]
    assert "Xu et al., 2020" in card.text and "SemEval terms" in card.text and "encoder's own model card" in card.text


def test_card_of_a_14res_run_names_data_encoder_licence_scores_and_command():
    from aste.export import decoding_settings, model_card
    from Parameter import parse_args
    args = vars(parse_args(["--pretrained_deberta_name", "all-MiniLM-L6-v2", "--epochs", "30"]))
    args.pop("overlap_filter")  # a run made before the flag existed: it decoded with 'none'
    config = {"args": args, "model": {"fusion": "tin"}, "encoder": {"name": "all-MiniLM-L6-v2"},
              "summary": {"best_epoch": 17, "dev_triplet_f1": 61.234, "test_triplet_f1": 64.617,
                          "test_at_best_dev": {"triplet": {"p": 70.0, "r": 60.0, "f1": 64.617}}},
              "decoding": decoding_settings({"args": args})}
    card = model_card(config, "me/14res-minilm", "other", 512, repo_id="me/14res-minilm")
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card and "licence Apache-2.0" in card
    assert "ASTE-Data-V2 `14res`: SemEval-2014 Task 4, restaurant reviews" in card
    assert "value: 64.62" in card and "value: 61.23" in card and "dev triplet F1 61.23" in card
    assert "P 70.00 / R 60.00 / F1 64.62" in card and 'Predictor.from_pretrained("me/14res-minilm")' in card
    assert "python train.py --overlap_filter none --pretrained_deberta_name all-MiniLM-L6-v2 --epochs 30\n" in card


def test_export_refuses_unfinished_runs_and_non_empty_folders(trained, from_run, exported, tmp_path):
    with pytest.raises(RunFolderError, match="not empty.*overwrite=True"):
        from_run.export(exported)
    with pytest.raises(RunFolderError, match="is a run folder"):
        from_run.export(trained, overwrite=True)
    again = from_run.export(str(tmp_path / "again"))
    (tmp_path / "again" / "notes.txt").write_text("kept")
    from_run.export(again, overwrite=True, license="apache-2.0")
    assert "license: apache-2.0" in open(os.path.join(again, "README.md")).read()
    assert (tmp_path / "again" / "notes.txt").read_text() == "kept"
    unfinished = str(tmp_path / "unfinished")
    shutil.copytree(trained, unfinished)
    cfg = json.load(open(os.path.join(unfinished, "config.json")))
    cfg.pop("summary")
    json.dump(cfg, open(os.path.join(unfinished, "config.json"), "w"))
    with pytest.raises(RunFolderError, match="unfinished run"):
        Predictor.from_run(unfinished, device="cpu").export(str(tmp_path / "never"))
    assert not os.path.exists(tmp_path / "never")


def test_hub_id_from_the_cache_offline(from_run, exported, offline_hub):
    repo = offline_hub / "models--owner--toy-model"
    shutil.copytree(exported, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    same_model(from_run, Predictor.from_pretrained("owner/toy-model", device="cpu"))


def test_unknown_hub_id_or_folder_is_one_line(offline_hub, tmp_path, capsys):
    with pytest.raises(RunFolderError) as err:
        Predictor.from_pretrained("owner/no-such-model", device="cpu")
    assert "owner/no-such-model" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RunFolderError, match="no such folder"):
        Predictor.from_pretrained(str(tmp_path / "no" / "such" / "folder"), device="cpu")
    import predict
    text = tmp_path / "in.txt"
    text.write_text("The soup was cold .\n")
    argv = ["--checkpoint", "owner/no-such-model", "--input", str(text), "--device", "cpu"]
    assert predict.run_cli(predict.main, argv) == 2  # the CLI's own wrapper: 'error: ...', exit status 2
    stderr = capsys.readouterr().err.strip().splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("error: owner/no-such-model: ") and "HF_HUB_OFFLINE" in stderr[0]


def test_metrics_recorded_above_the_threshold_are_those_of_decoding_at_it(trained, toy_files):
    """Each epoch's "decodings" at a higher --sen_filter_threshold (from the triplets scored at the run's
    0.3) equal a fresh decoding of the best checkpoint at it."""
    best = json.load(open(os.path.join(trained, "config.json")))["summary"]["best_epoch"]
    record = [json.loads(x) for x in open(os.path.join(trained, "metrics.jsonl"))][best - 1]
    assert record["test"]["triplet"]["n_pred"] > 0
    for threshold in ("0.5", "0.8"):
        run([sys.executable, "train.py", "--eval_only", "--checkpoint", trained, "--test_file", toy_files["test"],
             "--device", "cpu", "--sen_filter_threshold", threshold])
        ev = json.load(open(os.path.join(trained, f"eval_test_sen_filter_threshold{threshold}_metrics.json")))
        recorded = record["decodings"][f"sen_filter_threshold={threshold}"]["test"]
        assert {k: ev["metrics"][k] for k in recorded} == recorded
