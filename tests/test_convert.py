"""Raw ASTE-V2 files against the D2E2S JSON release, and raw -> JSON conversion with spaCy."""
import os


from aste.input_reader import read_aste, read_d2e2s
from conftest import DATA, needs_data

# The D2E2S JSON cut these three sentences at a '#' token and left an empty-string token in its
# place; the raw files hold the whole sentence. Triplets agree everywhere.
D2E2S_TRUNCATED = {("14res", "train", 748), ("15res", "train", 436), ("16res", "dev", 100)}


@needs_data
def test_raw_and_d2e2s_agree_on_every_triplet_of_every_dataset():
    token_diffs = set()
    for ds in ("14res", "14lap", "15res", "16res"):
        for split in ("train", "dev", "test"):
            raw = read_aste(os.path.join(DATA, "aste-v2", ds, f"{split}_triplets.txt"))
            js = read_d2e2s(os.path.join(DATA, "d2e2s", ds, f"{split}_dep_triple_polarity_result.json"))
            assert len(raw) == len(js)
            for i, (r, j) in enumerate(zip(raw, js)):
                assert sorted(t.as_tuple() for t in r.triplets) == sorted(t.as_tuple() for t in j.triplets), (ds, split, i)
                if r.tokens != j.tokens:
                    token_diffs.add((ds, split, i))
                    assert "" in j.tokens and r.tokens[: len(j.tokens) - 1] == j.tokens[:-1]
    assert token_diffs == D2E2S_TRUNCATED


@needs_data
def test_convert_raw_slice_to_d2e2s_json(tmp_path):
    from aste.parsing import load_spacy
    from scripts.convert_aste import convert_file

    src = tmp_path / "slice.txt"
    lines = open(os.path.join(DATA, "aste-v2", "14res", "test_triplets.txt"), encoding="utf-8").read().splitlines()[:25]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dst = tmp_path / "slice.json"
    convert_file(str(src), str(dst), load_spacy("en_core_web_sm"))
    converted = read_d2e2s(str(dst))
    raw = read_aste(str(src))
    assert [s.tokens for s in converted] == [s.tokens for s in raw]
    assert [s.triplets for s in converted] == [s.triplets for s in raw]
    for s in converted:  # one head per word, exactly one root, parse on the file's own words
        assert s.heads is not None and len(s.heads) == len(s.tokens) and s.heads.count(0) == 1
