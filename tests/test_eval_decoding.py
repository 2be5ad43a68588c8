"""scripts/eval_decoding.py's pooled table, on hand-made group means; scripts/same_training.py's comparison."""
from scripts.eval_decoding import pooled_table


def test_pooled_table_weighs_groups_equally_and_counts_dev_wins():
    group_means = {
        "a": {"none": {"dev": 50.0, "test": 55.0}, "spans": {"dev": 54.0, "test": 56.0},
              "triplets": {"dev": 52.0, "test": 57.0}},
        "b": {"none": {"dev": 60.0, "test": 61.0}, "spans": {"dev": 61.0, "test": 62.0},
              "triplets": {"dev": 63.0, "test": 63.0}},
        "c": {"none": {"dev": 40.0, "test": 41.0}, "spans": {"dev": 45.0, "test": 44.0},
              "triplets": {"dev": 44.0, "test": 46.0}},
    }
    rows = {line.split(" | ")[0].strip("| "): line for line in pooled_table(group_means) if line.startswith("| ")}
    assert rows["none"] == "| none | 50.00 | 52.33 | 0 of 3 |"
    assert rows["spans"] == "| spans | 53.33 | 54.00 | 2 of 3 |"
    assert rows["triplets"] == "| triplets | 53.00 | 55.33 | 1 of 3 |"


def test_same_training_compares_every_epochs_losses(tmp_path):
    import json

    from scripts.same_training import compare

    def run(name, losses):
        d = tmp_path / name
        d.mkdir()
        d.joinpath("metrics.jsonl").write_text("".join(
            json.dumps({"epoch": k + 1, "loss": x, "span_loss": x / 2, "pair_loss": x / 2, "dev": {}}) + "\n"
            for k, x in enumerate(losses)))
        return str(d)

    old = run("final-tin-seed1", [0.7, 0.4, 0.2])
    assert compare(run("spans-tin-seed1", [0.7, 0.4, 0.2]), old) == (3, 0)
    assert compare(run("a", [0.7, 0.41, 0.2]), old) == (3, 1)
    assert compare(run("b", [0.7, 0.4]), old) == (3, 1)  # a missing epoch counts as a difference
