"""Defects found by trying the tool as a user would (issue: a P100 on today's Kaggle, crash-safe run
folders, one-line errors): each test here failed before its fix."""
import errno
import json
import os
from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader

from aste.input_reader import BadExample, ReadReport, read_aste, read_d2e2s
from aste.sampling import ASTEDataset, LengthBucketSampler, collate
from conftest import minilm_dir, toy_sentences
from helpers import tiny_model
from Parameter import parse_args


# ---- flags -------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,flag", [
    (["--lr", "-1"], "--lr must be"), (["--task_lr", "0"], "--task_lr must be"), (["--lr", "nan"], "--lr must be"),
    (["--fusion_lr", "0"], "--fusion_lr must be"),
    (["--lr_warmup", "5"], "--lr_warmup"), (["--lr_warmup", "-0.1"], "--lr_warmup"),
    (["--drop_out_rate", "1.5"], "--drop_out_rate"), (["--gcn_dropout", "1"], "--gcn_dropout"),
    (["--prop_drop", "-0.2"], "--prop_drop"), (["--attention_dropout", "2"], "--attention_dropout"),
    (["--weight_decay", "-1"], "--weight_decay"), (["--max_grad_norm", "0"], "--max_grad_norm"),
    (["--num_workers", "-1"], "--num_workers"), (["--hidden_dim", "0"], "--hidden_dim"),
    (["--threads", "0"], "--threads"), (["--size_embedding", "0"], "--size_embedding"),
    (["--save_state_every", "0"], "--save_state_every"), (["--log_every", "-3"], "--log_every"),
])
def test_numeric_flags_out_of_range_fail_before_anything_loads(argv, flag):
    with pytest.raises(SystemExit, match=flag):
        parse_args(argv)


def test_config_file_gives_flags_and_the_command_line_overrides(tmp_path):
    saved = vars(parse_args(["--use_cross_attention", "--cross_attention_heads", "4", "--epochs", "7", "--lr", "5e-5"]))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"args": saved | {"resume": True}}))
    args = parse_args(["--config", str(path), "--seed", "3"])
    assert (args.fusion, args.cross_attention_heads, args.epochs, args.lr, args.seed) == ("cross_attention", 4, 7, 5e-5, 3)
    assert args.resume is False  # what to do with a run is never taken from a config
    assert parse_args(["--config", str(path), "--fusion", "lightweight"]).fusion == "lightweight"
    path.write_text(json.dumps({"args": saved | {"no_such_flag": 1}}))
    with pytest.raises(SystemExit, match="unknown flags --no_such_flag"):
        parse_args(["--config", str(path)])
    with pytest.raises(SystemExit, match="--config .*missing.json"):
        parse_args(["--config", str(tmp_path / "missing.json")])


def test_resume_compares_files_by_resolved_path(tmp_path):
    from aste.runs import resume_conflicts
    from Parameter import build_parser

    data = tmp_path / "train.json"
    data.write_text("[]")
    (tmp_path / "sub").mkdir()
    saved = vars(parse_args(["--train_file", str(tmp_path / "sub" / ".." / "train.json")]))
    now = parse_args(["--train_file", os.path.relpath(data), "--resume"])
    assert resume_conflicts(saved, now, vars(build_parser().parse_args([]))) == []


# ---- readers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("indices,words", [("[2, 6, 4]", "not consecutive"), ("[4, 3]", "not consecutive"),
                                           ("[1, 3]", "not consecutive")])
def test_non_contiguous_or_reversed_indices_are_errors(tmp_path, indices, words):
    p = tmp_path / "x.txt"
    p.write_text(f"a b c d e f g h####[({indices}, [0], 'POS')]\n")
    with pytest.raises(BadExample, match=f"x.txt:1: .*{words}"):
        read_aste(str(p))


def test_trailing_blank_lines_are_tolerated_blank_lines_inside_are_not(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("good soup####[([1], [0], 'POS')]\n\n  \n\n")
    assert len(read_aste(str(p))) == 1
    p.write_text("good soup####[([1], [0], 'POS')]\n\ngood soup####[([1], [0], 'POS')]\n")
    with pytest.raises(BadExample, match="x.txt:2: empty line"):
        read_aste(str(p))


@pytest.mark.parametrize("change", [{"entities": 5}, {"sentiments": None}, {"entities": "x"}, {"dependency": 3}])
def test_wrongly_typed_d2e2s_fields_name_the_sentence_and_can_be_skipped(tmp_path, change):
    good = {"tokens": ["good", "soup"], "entities": [{"type": "target", "start": 1, "end": 2},
            {"type": "opinion", "start": 0, "end": 1}], "sentiments": [{"type": "POSITIVE", "head": 0, "tail": 1}]}
    p = tmp_path / "x.json"
    p.write_text(json.dumps([good, good | change]))
    with pytest.raises(BadExample, match=r"x.json\[sentence #1\]: .*must be a list"):
        read_d2e2s(str(p))
    report = ReadReport()
    assert len(read_d2e2s(str(p), "skip", report)) == 1 and report.skipped["malformed"] == 1


# ---- sampling with workers ---------------------------------------------------------------------
def sampled_spans_per_epoch(num_workers: int, epochs: int = 3) -> list[list]:
    from types import SimpleNamespace

    from aste.data import make_loader, set_epoch
    from models.encoder import load_tokenizer

    ds = ASTEDataset(toy_sentences() * 3, load_tokenizer(minilm_dir()), max_span_size=4, train=True,
                     neg_entity_count=5, neg_triple_count=5, seed=0)
    args = SimpleNamespace(bucket_by_length=True, batch_size=4, seed=0, num_workers=num_workers)
    loader = make_loader(ds, args, True, torch.device("cpu"))
    out = []
    for epoch in range(1, epochs + 1):
        set_epoch(loader, epoch)
        out.append([(b["index"].tolist(), b["spans"].tolist()) for b in loader])
    return out


def test_negative_sampling_with_workers_is_identical_to_without():
    without, with_workers = sampled_spans_per_epoch(0), sampled_spans_per_epoch(2)
    assert without == with_workers
    assert without[0] != without[1] != without[2]  # a new draw every epoch


# ---- GPU paths on mocked devices ---------------------------------------------------------------
KAGGLE_CU128 = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]
CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


@pytest.mark.parametrize("cap,arch,ok", [
    ((6, 0), KAGGLE_CU128, False), ((6, 0), CU126, True), ((6, 1), CU126, True), ((7, 5), KAGGLE_CU128, True),
    ((8, 9), CU126, True), ((9, 0), ["sm_80", "compute_80"], True), ((6, 0), ["sm_70", "compute_70"], False),
    ((9, 0), ["sm_90a"], True), ((7, 0), ["sm_75"], False),
])
def test_cuda_build_supports(cap, arch, ok):
    from aste.environment import cuda_build_supports
    assert cuda_build_supports(cap, arch) is ok


def mock_gpu(monkeypatch, name="Tesla P100-PCIE-16GB", cap=(6, 0), arch=KAGGLE_CU128):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: arch)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # it counts emulation


def test_gpu_the_torch_build_has_no_kernels_for_stops_with_one_line(monkeypatch):
    from aste.environment import pick_device
    mock_gpu(monkeypatch)
    with pytest.raises(SystemExit) as err:
        pick_device("auto")
    msg = str(err.value)
    assert "Tesla P100-PCIE-16GB (sm_60) is not supported by the installed torch" in msg
    assert torch.__version__ in msg and "sm_70" in msg and "pip install torch" in msg and "\n" not in msg
    mock_gpu(monkeypatch, arch=CU126)
    assert pick_device("auto") == torch.device("cuda:0")


def test_bf16_is_refused_on_a_gpu_without_it_in_hardware(monkeypatch):
    from aste.environment import amp_dtype
    mock_gpu(monkeypatch, arch=CU126)
    with pytest.raises(SystemExit, match="no bf16 in hardware.*use --amp fp16"):
        amp_dtype("bf16", torch.device("cuda:0"))
    assert amp_dtype("fp16", torch.device("cuda:0")) == torch.float16
    mock_gpu(monkeypatch, name="NVIDIA A100", cap=(8, 0), arch=CU126)
    assert amp_dtype("bf16", torch.device("cuda:0")) == torch.bfloat16


def test_semantic_gcn_scores_are_finite_under_fp16_autocast():
    """Scores of large 768-wide features: scaled after the product they pass fp16's maximum."""
    from models.gcn import SemanticGCN
    torch.manual_seed(0)
    gcn = SemanticGCN(768, heads=1)
    with torch.no_grad():
        gcn.qk.weight.mul_(30.0)
    x = torch.randn(2, 6, 768) * 4
    mask = torch.ones(2, 6, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.float16):
        scores = gcn.head_scores(x)
        assert scores.dtype == torch.float16
        assert torch.isfinite(scores).all()
        assert torch.isfinite(gcn(x, mask)).all()
        q, k = gcn.qk(x).view(2, 6, 2, 1, 768).permute(2, 0, 3, 1, 4)
        assert not torch.isfinite(q @ k.transpose(-1, -2)).all()  # what the old order computed first
    reference = gcn.head_scores(x)
    assert torch.allclose(scores.float(), reference, rtol=2e-2, atol=1.0)


# ---- out of memory anywhere ---------------------------------------------------------------------
class OOMInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")


def toy_loader(tok):
    ds = ASTEDataset(toy_sentences(), tok, max_span_size=4, train=True)
    ds.set_epoch(1)
    return DataLoader(ds, batch_sampler=LengthBucketSampler(ds.lengths(), 4, shuffle=False),
                      collate_fn=partial(collate, pad_id=ds.pad_id))


def test_out_of_memory_in_backward_and_in_evaluation_is_one_message(tiny_bert_dir):
    from aste.trainer import OutOfMemory, Trainer, evaluate
    model, tok = tiny_model(tiny_bert_dir)
    loader = toy_loader(tok)
    trainer = Trainer(model, model, parse_args(["--lr_warmup", "0", "--epochs", "20"]), torch.device("cpu"), None, len(loader))
    real_loss = model.loss
    model.loss = lambda *a, **k: (OOMInBackward.apply(real_loss(*a, **k)[0]),) + real_loss(*a, **k)[1:]
    with pytest.raises(OutOfMemory, match=r"out of memory in training on a batch of 4 sentences x \d+ subwords"):
        trainer.train_epoch(loader, 1)

    def predict_oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")
    model.predict = predict_oom
    with pytest.raises(OutOfMemory, match="out of memory in dev evaluation on a batch of .*--batch_size"):
        evaluate(model, loader, 0.4, 100, torch.device("cpu"), desc="dev")


# ---- run folder under faults ----------------------------------------------------------------------
def test_a_full_disk_mid_write_keeps_the_previous_file_and_no_temp(tmp_path, monkeypatch):
    import aste.atomic as atomic
    from aste.runs import RunFolder

    run = RunFolder(str(tmp_path))
    run.write_history([{"epoch": 1}])
    real_dumps, calls = json.dumps, {"n": 0}

    def dumps_then_disk_full(obj, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_dumps(obj, **kw)
    monkeypatch.setattr(atomic.json, "dumps", dumps_then_disk_full)
    with pytest.raises(OSError):
        run.write_history([{"epoch": 1}, {"epoch": 2}])
    monkeypatch.undo()
    assert open(run.file("metrics.jsonl")).read() == '{"epoch": 1}\n'
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_leftover_temp_files_are_found_and_only_they(tmp_path):
    from aste.atomic import remove_temp_files
    for name in ("state.pt.tmp4242", "metrics.jsonl.tmp17", "state.pt", "notes.tmp", "x.tmpfile"):
        (tmp_path / name).write_text("x")
    removed = remove_temp_files(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == ["metrics.jsonl.tmp17", "state.pt.tmp4242"]
    assert sorted(os.listdir(tmp_path)) == ["notes.tmp", "state.pt", "x.tmpfile"]


def test_runs_made_before_a_flag_keep_what_they_did():
    """A run saved before --overlap_filter existed decoded without it: eval-only, Predictor and
    --resume read it as 'none', not as today's default."""
    from aste.runs import resume_conflicts, saved_flag
    from Parameter import build_parser
    defaults = vars(build_parser().parse_args([]))
    old = {k: v for k, v in vars(parse_args([])).items() if k != "overlap_filter"}
    assert defaults["overlap_filter"] == "spans" and saved_flag(old, "overlap_filter", "spans") == "none"
    assert saved_flag({}, "lr", 1.0) == 1.0 and saved_flag({"lr": 2.0}, "lr", 1.0) == 2.0
    assert resume_conflicts(old, parse_args(["--resume"]), defaults) == ["--overlap_filter was 'none', now 'spans'"]
    assert resume_conflicts(old, parse_args(["--resume", "--overlap_filter", "none"]), defaults) == []


def test_config_values_pass_the_parser_checks_and_old_runs_keep_their_decoding(tmp_path):
    saved = {k: v for k, v in vars(parse_args(["--epochs", "7"])).items() if k != "overlap_filter"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"args": saved}))
    args = parse_args(["--config", str(path)])
    assert args.overlap_filter == "none" and args.epochs == 7 and args.run_name is None
    path.write_text(json.dumps({"args": saved | {"overlap_filter": "Triplets"}}))
    with pytest.raises(SystemExit):  # argparse: invalid choice
        parse_args(["--config", str(path)])
    path.write_text(json.dumps({"args": saved | {"epochs": "ten"}}))
    with pytest.raises(SystemExit):  # argparse: invalid int value
        parse_args(["--config", str(path)])


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_seed_out_of_range(seed):
    with pytest.raises(SystemExit, match="--seed must be in"):
        parse_args(["--seed", seed])


def test_eval_only_scores_under_the_runs_amp_unless_told_otherwise():
    """A run trained with --amp fp16 was scored under autocast every epoch; eval-only ran in fp32."""
    from train import take_flags_from_run
    saved = vars(parse_args(["--amp", "fp16", "--dataset", "14lap"]))
    args = parse_args([])  # --checkpoint must name a real run folder; only the flags matter here
    take_flags_from_run(args, saved, ["--eval_only", "--checkpoint", "run"])
    assert args.amp == "fp16" and args.dataset == "14lap"
    args = parse_args(["--amp", "off"])
    take_flags_from_run(args, saved, ["--eval_only", "--checkpoint", "run", "--amp", "off"])
    assert args.amp == "off"
