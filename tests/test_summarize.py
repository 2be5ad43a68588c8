"""scripts/summarize.py on hand-made run records: grouping by flags and commit, and the columns."""
import os

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
    assert "| 42: 70.00 (68.00 / 72.00), 1: 68.00 (66.00 / 70.00) |" in row   # P / R of each seed
    assert "`aaaaaaa`, `bbbbbbb`" in row


def test_as_decoding_chooses_the_best_epoch_again_from_the_recorded_decodings():
    from scripts.summarize import as_decoding

    def metrics(f1):
        return {"triplet": {"p": f1, "r": f1, "f1": f1}, "entity": {"p": 80.0, "r": 80.0, "f1": 80.0}}
    run = fake_run(42, "aaaaa", 0.0, 0.0, 0.0)
    run["cfg"]["args"]["overlap_filter"] = "triplets"
    own = [(50.0, 60.0), (55.0, 62.0), (54.0, 63.0)]     # (dev, test) per epoch under 'triplets'
    spans = [(51.0, 61.0), (53.0, 64.0), (56.0, 66.0)]   # under 'spans': epoch 3 is best on dev
    run["history"] = [{"epoch": e + 1, "dev": metrics(own[e][0]), "test": metrics(own[e][1]),
                       "decodings": {"spans": {"dev": metrics(spans[e][0]), "test": metrics(spans[e][1])},
                                     "none": {"dev": metrics(0.0), "test": metrics(0.0)}}} for e in range(3)]
    assert as_decoding(run, "triplets") == run | {"decoding": "triplets"}
    new = as_decoding(run, "spans")
    assert new["cfg"]["summary"]["best_epoch"] == 3 and new["cfg"]["summary"]["test_triplet_f1"] == 66.0
    assert new["cfg"]["args"]["overlap_filter"] == "spans" and run["cfg"]["args"]["overlap_filter"] == "triplets"
    assert new["history"][1]["dev"]["triplet"]["f1"] == 53.0 and run["history"][1]["dev"]["triplet"]["f1"] == 55.0
    del run["history"][0]["decodings"]
    assert as_decoding(run, "spans") is None            # a run made before the records: not guessed


def test_a_higher_threshold_replaces_pair_and_triplet_scores_only():
    from scripts.summarize import as_decoding, pooled_by_decoding

    def metrics(f1, kinds=("triplet", "pair", "entity")):
        return {k: {"p": f1, "r": f1, "f1": f1} for k in kinds}
    run = fake_run(42, "aaaaa", 0.0, 0.0, 0.0)
    run["cfg"]["args"]["sen_filter_threshold"] = 0.4  # made at 0.4, whatever today's default
    at = {0.4: [(50.0, 60.0), (55.0, 62.0)], 0.7: [(57.0, 59.0), (54.0, 66.0)]}  # (dev, test) per epoch
    run["history"] = [{"epoch": e + 1, "dev": metrics(at[0.4][e][0]), "test": metrics(at[0.4][e][1]),
                       "decodings": {"sen_filter_threshold=0.7": {s: metrics(at[0.7][e][i], ("triplet", "pair"))
                                                                  for i, s in enumerate(("dev", "test"))}}}
                      for e in range(2)]
    run["cfg"]["summary"] |= {"best_epoch": 2, "dev_triplet_f1": 55.0, "test_triplet_f1": 62.0}
    assert as_decoding(run, "sen_filter_threshold=0.4") == run | {"decoding": "sen_filter_threshold=0.4"}
    new = as_decoding(run, "sen_filter_threshold=0.7")
    assert new["cfg"]["summary"]["best_epoch"] == 1 and new["cfg"]["summary"]["test_triplet_f1"] == 59.0
    assert new["cfg"]["args"]["sen_filter_threshold"] == 0.7 and new["history"][0]["dev"]["entity"]["f1"] == 50.0
    table, groups = summarize([as_decoding(run, d) for d in ("sen_filter_threshold=0.4", "sen_filter_threshold=0.7")])
    assert len(groups) == 2 and table.count("sen_filter_threshold=0.7") == 1
    pooled = pooled_by_decoding(groups, ["sen_filter_threshold=0.4", "sen_filter_threshold=0.7"])
    assert "| sen_filter_threshold=0.7 | 57.00 | 59.00 | 1 of 1 |" in pooled  # best on dev, not on test


def test_several_decodings_give_a_row_each_and_are_pooled_over_configurations():
    from scripts.summarize import as_decoding, pooled_by_decoding

    def metrics(f1):
        return {"triplet": {"p": f1, "r": f1, "f1": f1}, "entity": {"p": 80.0, "r": 80.0, "f1": 80.0}}

    def run(seed, dataset, spans, none):  # (dev, test) F1 of its one epoch under spans (its own decoding) and none
        r = fake_run(seed, "aaaaa", spans[1], spans[1], spans[1])
        r["cfg"]["args"]["dataset"] = dataset
        r["cfg"]["summary"] |= {"best_epoch": 1, "dev_triplet_f1": spans[0]}
        r["history"] = [{"epoch": 1, "dev": metrics(spans[0]), "test": metrics(spans[1]),
                         "decodings": {"none": {"dev": metrics(none[0]), "test": metrics(none[1])}}}]
        return r
    runs = [run(42, "14res", (60.0, 70.0), (58.0, 69.0)), run(1, "14res", (62.0, 72.0), (60.0, 71.0)),
            run(42, "14lap", (50.0, 55.0), (51.0, 54.0))]
    table, groups = summarize([as_decoding(r, d) for d in ("none", "spans") for r in runs])
    assert len(groups) == 4 and table.count("overlap_filter=none") == 2  # 2 datasets x 2 decodings
    pooled = pooled_by_decoding(groups, ["none", "spans"]).splitlines()
    assert pooled[0].startswith("Pooled over the 2 configurations")
    # none: 14res dev 59, test 70; 14lap dev 51, test 54. spans: 14res dev 61, test 71; 14lap dev 50, test 55
    assert "| none | 55.00 | 62.00 | 1 of 2 |" in pooled and "| spans | 55.50 | 63.00 | 1 of 2 |" in pooled


def test_upto_chooses_on_dev_among_the_first_epochs_of_finished_and_unfinished_runs():
    from scripts.summarize import upto

    def record(epoch, dev, test):
        m = {"triplet": {"p": test, "r": test, "f1": test}, "entity": {"p": 80.0, "r": 80.0, "f1": 80.0}}
        return {"epoch": epoch, "dev": {"triplet": {"f1": dev}}, "test": m, "train_seconds": 10.0 * epoch,
                "test_seconds": 1.0, "peak_rss_mb": 100.0 * epoch}
    run = fake_run(42, "aaaaa", 0.0, 0.0, 0.0)
    del run["cfg"]["summary"]                                   # still running: no summary yet
    run["history"] = [record(1, 50.0, 60.0), record(2, 56.0, 61.0), record(3, 55.0, 66.0), record(4, 58.0, 62.0)]
    three = upto(run, 3)
    assert three["cfg"]["summary"]["best_epoch"] == 2 and three["cfg"]["summary"]["test_triplet_f1"] == 61.0
    assert three["cfg"]["summary"]["mean_train_seconds_per_epoch"] == 20.0
    assert three["cfg"]["summary"]["peak_rss_mb"] == 300.0 and len(three["history"]) == 3
    assert upto(run, 4)["cfg"]["summary"]["best_epoch"] == 4 and "summary" not in run["cfg"]
    assert upto(run, 5) is None                                 # has not run that far: left out, not guessed


def test_replay_patience_reads_finished_runs_only(tmp_path):
    import json
    from scripts.replay_patience import main

    for name, finished in (("done", True), ("running", False)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"args": {}} | ({"summary": {}} if finished else {})))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"dev": {"triplet": {"f1": f1}}}) + "\n"
                                                   for f1 in (50.0, 60.0, 55.0)))
    main([str(tmp_path / "*"), "--patience", "1", "--out", str(tmp_path / "patience.md")])
    text = (tmp_path / "patience.md").read_text()
    assert text.startswith("# --patience replayed on 1 finished runs") and "running" not in text
    assert "| 1 | 0 | 3 | 100% |" in text        # patience 1 stops 'done' at epoch 3, after its best (2)


def test_replay_patience_under_a_decoding_uses_its_records_and_names_runs_without_them(tmp_path):
    import json
    from scripts.replay_patience import main

    def record(epoch, own, at_09=None):
        m = {"triplet": {"f1": own}, "entity": {"f1": 80.0}}
        r = {"epoch": epoch, "dev": m, "test": m}
        return r | ({"decodings": {"sen_filter_threshold=0.9": {"dev": {"triplet": {"f1": at_09}},
                                                                "test": {"triplet": {"f1": at_09}}}}}
                    if at_09 is not None else {})
    curves = {"recorded": [(50.0, 52.0), (60.0, 51.0), (55.0, 61.0)], "unrecorded": [(50.0, None), (60.0, None)]}
    for name, curve in curves.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"args": {"sen_filter_threshold": 0.4}, "summary": {}}))
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(record(e, *c)) + "\n"
                                                               for e, c in enumerate(curve, start=1)))
    main([str(tmp_path / "*"), "--patience", "1", "--decoding", "sen_filter_threshold=0.9",
          "--out", str(tmp_path / "patience.md")])
    text = (tmp_path / "patience.md").read_text()
    assert text.startswith("# --patience replayed on 1 finished runs under sen_filter_threshold=0.9")
    # under its own threshold patience 1 would stop 'recorded' at epoch 3, after its best (2); under 0.9
    # its best is epoch 3 and patience 1 stops it at 2, before it
    assert f"| 1 | 1 ({os.path.relpath(tmp_path / 'recorded')}) | 2 | 67% |" in text
    assert f"Left out, with no per-epoch sen_filter_threshold=0.9 records: {os.path.relpath(tmp_path / 'unrecorded')}." in text


def test_gzipped_metrics_read_like_plain_ones(tmp_path):
    import gzip
    import json
    from scripts.summarize import load_run

    records = [{"epoch": epoch, "dev": {"triplet": {"f1": f1}}} for epoch, f1 in ((1, 50.0), (2, 60.0))]
    text = "".join(json.dumps(r) + "\n" for r in records)
    for name in ("plain", "archived"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text('{"args": {}}')
    (tmp_path / "plain" / "metrics.jsonl").write_text(text)
    (tmp_path / "archived" / "metrics.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    assert load_run(str(tmp_path / "archived"))["history"] == load_run(str(tmp_path / "plain"))["history"] == records
    assert load_run(str(tmp_path / "missing")) is None


def test_sweep_time_budget_counts_the_epochs_of_archived_runs(tmp_path):
    import gzip
    import json
    from scripts.sweep import slowest_epoch

    (tmp_path / "config.json").write_text('{"args": {}}')
    epoch = {"train_seconds": 100.0, "dev_seconds": 5.0, "test_seconds": 7.0}
    (tmp_path / "metrics.jsonl.gz").write_bytes(gzip.compress((json.dumps(epoch) + "\n").encode()))
    assert slowest_epoch([str(tmp_path), str(tmp_path / "missing")]) == 112.0
