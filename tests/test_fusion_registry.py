"""A fusion defined outside the package, with an option of its own, goes through the real training
path: its flag parses, reaches the module, changes the run name, and is refused for other fusions."""
import json
import os

import pytest
import torch

import models.fusion as fusion
import train
from helpers import train_cmd
from Parameter import parse_args


class ScaledSumFusion(torch.nn.Module):
    defaults = {"sum_scale": 1.0}
    built_with = []  # the options each instance received

    def __init__(self, dim, dropout=0.1, sum_scale=1.0):
        super().__init__()
        self.proj = torch.nn.Linear(dim, dim)
        self.scale = sum_scale
        ScaledSumFusion.built_with.append(sum_scale)

    def forward(self, x, h_syn, h_sem, word_mask):
        return self.proj(x + self.scale * (h_syn + h_sem)) * word_mask.unsqueeze(-1).to(x.dtype)


@pytest.fixture
def scaled_sum(monkeypatch):
    """Registered for this test only (the registry is global, the flag reference must not see it)."""
    monkeypatch.setattr(fusion, "OPTIONS", dict(fusion.OPTIONS))
    monkeypatch.setattr(fusion, "FUSIONS", dict(fusion.FUSIONS))
    for module in ("Parameter", "models.d2e2s"):
        monkeypatch.setattr(f"{module}.OPTIONS", fusion.OPTIONS)
    monkeypatch.setattr("Parameter.FUSIONS", fusion.FUSIONS)
    fusion.fusion_option("sum_scale", float, "weight of the GCN branches in the sum", minimum=0)
    fusion.register_fusion("scaled_sum")(ScaledSumFusion)
    ScaledSumFusion.built_with.clear()
    yield


def test_own_fusion_with_its_own_option_trains_through_the_cli(scaled_sum, tiny_bert_dir, toy_files, tmp_path):
    base = train_cmd(tiny_bert_dir, toy_files, tmp_path, "--fusion", "scaled_sum", "--epochs", "1")[2:]
    plain = train.main(base)
    scaled = train.main(base + ["--sum_scale", "0.5"])
    assert ScaledSumFusion.built_with == [1.0, 0.5]
    runs = sorted(os.listdir(tmp_path / "toy"))
    assert len(runs) == 2 and any("sum_scale=0.5" in r for r in runs), runs
    for name in runs:
        saved = json.load(open(tmp_path / "toy" / name / "config.json"))
        assert saved["model"]["fusion"] == "scaled_sum"
        assert saved["model"]["fusion_options"]["sum_scale"] == (0.5 if "sum_scale" in name else 1.0)
    assert plain["best_epoch"] == scaled["best_epoch"] == 1


def test_own_option_is_refused_for_other_fusions_and_checked(scaled_sum):
    with pytest.raises(SystemExit, match="--sum_scale is not an option of --fusion tin"):
        parse_args(["--sum_scale", "2"])
    with pytest.raises(SystemExit, match="--sum_scale must be >= 0"):
        parse_args(["--fusion", "scaled_sum", "--sum_scale", "-1"])


def test_run_name_holds_every_changed_flag_and_nothing_else():
    from Parameter import default_run_name
    name = default_run_name(parse_args(["--pretrained_deberta_name", "x/all-MiniLM-L6-v2", "--fusion", "lightweight",
                                        "--cross_attention_window", "2", "--lr", "5e-5", "--threads", "1",
                                        "--results_dir", "elsewhere", "--seed", "3"]))
    assert name == "all-minilm-l6-v2-lightweight-cross_attention_window=2-lr=5e-05-seed3"
    assert default_run_name(parse_args(["--fusion", "lightweight", "--cross_attention_heads", "4"])) == \
        "deberta-v3-base-lightweight-seed42"  # 4 is lightweight's own default
