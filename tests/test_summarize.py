"""scripts/summarize.py on hand-made run records: grouping by flags and commit, and the columns."""
from scripts.summarize import summarize
from Parameter import parse_args


def fake_run(seed: int, commit: str, test_f1: float, p: float, r: float) -> dict:
    args = vars(parse_args(["--dataset", "14res", "--seed", str(seed)]))
    history = [{"epoch": 1, "test": {"triplet": {"p": 0.0, "r": 0.0, "f1": 0.0}}},
               {"epoch": 2, "test": {"triplet": {"p": p, "r": r, "f1": test_f1}}}]
    summary = {"best_epoch": 2, "test_triplet_f1": test_f1, "test_entity_f1": 80.0, "dev_triplet_f1": 60.0,
               "mean_train_seconds_per_epoch": 10.0, "mean_test_eval_seconds": 1.0, "peak_rss_mb": 1000.0}
    cfg = {"args": args, "summary": summary, "environment": {"commit": commit * 8, "dirty": False, "device": "cpu"}}
    return {"dir": f"runs/s{seed}", "cfg": cfg, "history": history}


def test_runs_at_two_commits_are_kept_apart_unless_pooled():
    runs = [fake_run(42, "aaaaa", 70.0, 68.0, 72.0), fake_run(1, "bbbbb", 68.0, 66.0, 70.0)]
    table, groups = summarize(runs)
    assert len(groups) == 2
    table, groups = summarize(runs, pool_commits=True)
    assert len(groups) == 1
    row = table.splitlines()[2]
    assert "| 42, 1 |" in row and "69.00 ± 1.41" in row          # mean ± sample std of 70 and 68
    assert "| 67.00 / 71.00 |" in row                             # P / R at each run's best-dev epoch, averaged
    assert "| 42: 70.00, 1: 68.00 |" in row
    assert "`aaaaaaa`, `bbbbbbb`" in row
