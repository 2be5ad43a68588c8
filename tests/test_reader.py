"""Readers: counts on the real files, every class of bad input -> a clear error naming file and
sentence/line (or a counted skip), and the empty-token repair."""
import json
import os

import pytest

from aste.encoding import encode_sentence
from aste.input_reader import BadExample, ReadReport, read_aste, read_d2e2s, read_sentences
from aste.sampling import ASTEDataset
from conftest import DATA, minilm_dir, needs_data

COUNTS = {  # from ../shared/data/README.md: sentences / triplets per split
    "14res": {"train": (1266, 2338), "dev": (310, 577), "test": (492, 994)},
    "14lap": {"train": (906, 1460), "dev": (219, 346), "test": (328, 543)},
    "15res": {"train": (605, 1013), "dev": (148, 249), "test": (322, 485)},
    "16res": {"train": (857, 1394), "dev": (210, 339), "test": (326, 514)},
}


@needs_data
@pytest.mark.parametrize("ds", sorted(COUNTS))
def test_real_files_sentence_and_triplet_counts(ds):
    for split, (n_sent, n_trip) in COUNTS[ds].items():
        js = read_d2e2s(os.path.join(DATA, "d2e2s", ds, f"{split}_dep_triple_polarity_result.json"))
        raw = read_aste(os.path.join(DATA, "aste-v2", ds, f"{split}_triplets.txt"))
        assert len(js) == len(raw) == n_sent
        assert sum(len(s.triplets) for s in js) == sum(len(s.triplets) for s in raw) == n_trip


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


GOOD = {"tokens": ["The", "soup", "was", "cold", "."], "entities": [{"type": "target", "start": 1, "end": 2},
        {"type": "opinion", "start": 3, "end": 4}], "sentiments": [{"type": "NEGATIVE", "head": 0, "tail": 1}],
        "pos": [["The", "DT"], ["soup", "NN"], ["was", "VBD"], ["cold", "JJ"], [".", "."]],
        "dependency": [["det", 2, 1], ["nsubj", 4, 2], ["cop", 4, 3], ["ROOT", 0, 4], ["punct", 4, 5]]}


def bad(**change):
    item = json.loads(json.dumps(GOOD))
    for k, v in change.items():
        item[k] = v
    return item


@pytest.mark.parametrize("item,kind,words", [
    (bad(entities=[{"type": "target", "start": 1, "end": 9}, GOOD["entities"][1]]), "span_out_of_range", "out of range"),
    (bad(entities=[{"type": "target", "start": -1, "end": 0}, GOOD["entities"][1]]), "implicit", "implicit"),
    (bad(sentiments=[{"type": "NEGATIVE", "head": 0, "tail": 5}]), "span_out_of_range", "entity"),
    (bad(sentiments=[{"type": "SARCASTIC", "head": 0, "tail": 1}]), "bad_label", "unknown sentiment"),
    (bad(tokens=[]), "empty_sentence", "empty sentence"),
    (bad(dependency=[["det", 9, 1], ["nsubj", 4, 2], ["cop", 4, 3], ["ROOT", 0, 4], ["punct", 4, 5]]),
     "span_out_of_range", "dependency"),
    ({"tokens": ["a"]}, "malformed", "missing key"),
])
def test_d2e2s_bad_examples(tmp_path, item, kind, words):
    path = write(tmp_path, "x.json", json.dumps([GOOD, item]))
    with pytest.raises(BadExample) as e:
        read_d2e2s(path)
    assert e.value.kind == kind and words in str(e.value)
    assert path in str(e.value) and "sentence #1" in str(e.value)
    report = ReadReport()
    assert len(read_d2e2s(path, "skip", report)) == 1 and report.skipped[kind] == 1


def test_malformed_json_names_file_and_line(tmp_path):
    path = write(tmp_path, "broken.json", '[\n{"tokens": ["a"],\n "entities": [}\n]')
    with pytest.raises(BadExample, match=r"broken.json:3: malformed JSON"):
        read_d2e2s(path)


def test_missing_file_says_how_to_get_data(tmp_path):
    from aste.input_reader import DataFileError
    with pytest.raises(DataFileError, match="get_data.py"):
        read_sentences(str(tmp_path / "nope.json"))


def test_parse_on_other_tokenisation_is_counted_and_dropped(tmp_path):
    item = bad(pos=[["The", "DT"], ["soup", "NN"], ["was", "VBD"], ["cold", "JJ"]],
               dependency=[["det", 2, 1], ["nsubj", 4, 2], ["cop", 4, 3], ["ROOT", 0, 4]])
    report = ReadReport()
    (s,) = read_d2e2s(write(tmp_path, "x.json", json.dumps([item])), report=report)
    assert s.heads is None and report.notes["parse_on_other_tokenisation_reparsed"] == 1


@pytest.mark.parametrize("line,kind,words", [
    ("The soup was cold .####[([-1], [3], 'NEG')]", "implicit", "implicit"),
    ("The soup was cold .####[([1], [7], 'NEG')]", "span_out_of_range", "out of range"),
    ("The soup was cold .####[([1], [3], 'NEG')", "malformed", "malformed triplet list"),
    ("The soup was cold .####[([1], [3], 'ANGRY')]", "bad_label", "unknown sentiment"),
    ("The soup was cold .", "malformed", "####"),
    ("####[]", "empty_sentence", "empty sentence"),
    ("The soup was cold .####[([1], [3])]", "malformed", "triplet #0"),
    ("The soup was cold .####__import__('os').system('echo pwned')", "malformed", "malformed triplet list"),
])
def test_aste_bad_lines_name_file_and_line(tmp_path, line, kind, words):
    path = write(tmp_path, "raw.txt", "The soup was hot .####[([1], [3], 'POS')]\n" + line + "\n")
    with pytest.raises(BadExample) as e:
        read_aste(path)
    assert e.value.kind == kind and words in str(e.value) and f"{path}:2" in str(e.value)
    report = ReadReport()
    assert len(read_aste(path, "skip", report)) == 1 and report.skipped[kind] == 1


def test_aste_empty_line_and_non_utf8(tmp_path):
    path = write(tmp_path, "raw.txt", "The soup was hot .####[([1], [3], 'POS')]\n\nGood food .####[([1], [0], 'POS')]\n")
    with pytest.raises(BadExample, match=r"raw.txt:2: empty line"):
        read_aste(path)
    p = tmp_path / "latin1.txt"
    p.write_bytes("The caf\xe9 was nice .####[([1], [3], 'POS')]\n".encode("latin-1"))
    with pytest.raises(BadExample, match=r"latin1.txt:1: not valid UTF-8"):
        read_aste(str(p))


def test_raw_and_json_agree_on_a_sentence(tmp_path):
    raw = read_aste(write(tmp_path, "r.txt", "The soup was cold .####[([1], [3], 'NEG')]\n"))
    js = read_d2e2s(write(tmp_path, "j.json", json.dumps([GOOD])))
    assert raw[0].tokens == js[0].tokens and raw[0].triplets == js[0].triplets


def test_raw_line_splits_on_whitespace_like_aste_v2(tmp_path):
    """A double space (or a tab) must not add an empty word and shift every later index (issue #25)."""
    one = read_aste(write(tmp_path, "one.txt", "The soup was cold .####[([1], [3], 'NEG')]\n"))
    two = read_aste(write(tmp_path, "two.txt", "The soup  was\tcold .####[([1], [3], 'NEG')]\n"))
    assert two[0].tokens == one[0].tokens == ["The", "soup", "was", "cold", "."]
    assert two[0].triplets == one[0].triplets


BOM = "\ufeff"


def test_bom_in_json_file_is_read(tmp_path):
    assert read_d2e2s(write(tmp_path, "j.json", BOM + json.dumps([GOOD])))[0].tokens == GOOD["tokens"]


def test_bom_in_txt_file_is_not_part_of_the_first_word(tmp_path):
    (s,) = read_aste(write(tmp_path, "r.txt", BOM + "The soup was cold .####[([1], [3], 'NEG')]\n"))
    assert s.tokens[0] == "The"


def test_bom_does_not_change_the_detected_format(tmp_path):
    (s,) = read_sentences(write(tmp_path, "noext", BOM + json.dumps([GOOD])))
    assert s.tokens == GOOD["tokens"] and s.heads is not None  # read as D2E2S JSON, with its parse


def test_bom_file_with_bad_utf8_names_the_right_line(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes(BOM.encode() + "Good .####[([0], [0], 'POS')]\nThe caf\xe9 .####[([1], [1], 'POS')]\n".encode("latin-1"))
    with pytest.raises(BadExample, match=r"latin1.txt:2: not valid UTF-8"):
        read_aste(str(p))


@pytest.mark.parametrize("line", ["The soup was cold .####[([True], [3], 'NEG')]",
                                  "The soup was cold .####[([1], [False, True], 'NEG')]"])
def test_raw_boolean_index_is_refused(tmp_path, line):
    path = write(tmp_path, "raw.txt", "The soup was hot .####[([1], [3], 'POS')]\n" + line + "\n")
    with pytest.raises(BadExample, match=rf"{path}:2: triplet #0: .*(True|False)"):
        read_aste(path)


@pytest.mark.parametrize("item", [
    bad(entities=[{"type": "target", "start": True, "end": 2}, GOOD["entities"][1]]),
    bad(sentiments=[{"type": "NEGATIVE", "head": False, "tail": 1}]),
    bad(sentiments=[{"type": "NEGATIVE", "head": 0, "tail": True}]),
    bad(dependency=[["det", 2, True], ["nsubj", 4, 2], ["cop", 4, 3], ["ROOT", 0, 4], ["punct", 4, 5]]),
    bad(dependency=[["det", 2, 1], ["nsubj", 4, 2], ["cop", 4, 3], ["ROOT", False, 4], ["punct", 4, 5]]),
])
def test_json_boolean_index_is_refused(tmp_path, item):
    path = write(tmp_path, "x.json", json.dumps([GOOD, item]))
    with pytest.raises(BadExample, match=rf"{path}\[sentence #1\]: .*(True|False)"):
        read_d2e2s(path)

def test_empty_string_token_is_encoded_as_unk_and_counted():
    """14res train #748 ends with an empty-string token; it must get a subword (no empty span)."""
    from models.encoder import load_tokenizer
    from aste.input_reader import Sentence, Triplet

    tok = load_tokenizer(minilm_dir())
    s = Sentence(["Great", "food", "", "\u200b", "!"], [Triplet((1, 2), (0, 1), "POS")], [2, 0, 2, 2, 2], "t#0")
    report = ReadReport()
    enc = encode_sentence(s, tok, 512, report)
    assert report.notes["word_without_subwords_replaced_by_unk"] == 2
    lengths = enc.word_spans[:, 1] - enc.word_spans[:, 0]
    assert (lengths >= 1).all()
    assert enc.input_ids[enc.word_spans[2, 0]] == tok.unk_token_id


def test_overlong_sentence_is_an_error_or_counted_skip():
    from models.encoder import load_tokenizer
    from aste.input_reader import Sentence, Triplet

    tok = load_tokenizer(minilm_dir())
    long_s = Sentence(["word"] * 600, [Triplet((0, 1), (1, 2), "POS")], None, "f.txt:7")
    with pytest.raises(BadExample, match=r"f.txt:7: .*over the encoder's limit of 512.*not truncated"):
        ASTEDataset([long_s], tok, max_span_size=8, train=False)
    ds = ASTEDataset([long_s], tok, max_span_size=8, train=False, on_bad_example="skip")
    assert len(ds) == 0 and ds.report.skipped["overlong"] == 1


def test_empty_sentence_is_an_error_or_counted_skip():
    """Predictor builds Sentence objects itself, past the file readers' check: an empty one must not
    reach the model (an empty row indexes out of range in the span tables)."""
    from models.encoder import load_tokenizer
    from aste.input_reader import Sentence

    tok = load_tokenizer(minilm_dir())
    empty = Sentence([], [], None, "input 3")
    with pytest.raises(BadExample, match=r"input 3: empty sentence"):
        ASTEDataset([empty], tok, max_span_size=8, train=False)
    ds = ASTEDataset([empty], tok, max_span_size=8, train=False, on_bad_example="skip")
    assert len(ds) == 0 and ds.report.skipped["empty_sentence"] == 1


@needs_data
def test_real_empty_token_sentence_trains_with_finite_loss():
    """The sentence that gave the original code losses near 1e25."""
    import torch
    from helpers import batch_of, tiny_model
    from aste.parsing import add_parses

    sents = read_d2e2s(os.path.join(DATA, "d2e2s", "14res", "train_dep_triple_polarity_result.json"))
    s = sents[748]
    assert "" in s.tokens
    add_parses([s], cache_dir=None)
    model, tok = tiny_model(minilm_dir(), hidden_dim=16)
    batch, _ = batch_of([s], tok, train=True)
    loss, span_loss, pair_loss = model.loss(batch, *model(batch))
    assert torch.isfinite(loss) and loss.item() < 20


def test_parse_cache_hit_does_not_import_spacy(tmp_path):
    """A file parsed once is read from the cache; the cache key names the pipeline's version, read
    from package metadata, so a hit costs no spaCy import (memory and start-up)."""
    import subprocess
    import sys

    from aste.input_reader import Sentence, Triplet
    from aste.parsing import add_parses

    def sentences():
        return [Sentence(["The", "soup", "was", "great", "."], [Triplet((1, 2), (3, 4), "POS")], None, "f.txt:1")]

    import spacy.util

    from aste.parsing import package_version, resolve_spacy_name
    name = resolve_spacy_name("en_core_web_sm")
    assert package_version(name) == spacy.util.get_package_version(name) is not None  # same key: old caches hit
    assert package_version("no_such_pipeline_xyz") is None
    first = sentences()
    add_parses(first, cache_dir=str(tmp_path))  # parses with spaCy and writes the cache
    assert len(list(tmp_path.glob("parse-*.json"))) == 1
    program = ("import sys\nfrom aste.input_reader import Sentence, Triplet\nfrom aste.parsing import add_parses\n"
               "s = [Sentence(['The', 'soup', 'was', 'great', '.'], [Triplet((1, 2), (3, 4), 'POS')], None, 'f.txt:1')]\n"
               f"add_parses(s, cache_dir={str(tmp_path)!r})\n"
               "print(s[0].heads, 'spacy' in sys.modules)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", program], cwd=root, capture_output=True, text=True, check=True,
                         env=os.environ | {"PYTHONPATH": root}).stdout.split("\n")[-2]
    assert out == f"{first[0].heads} False"
