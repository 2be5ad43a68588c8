"""Read ASTE data into `Sentence` objects.

Two formats:
  * D2E2S JSON (``<split>_dep_triple_polarity_result.json``): tokens, entities (end exclusive),
    sentiments (head = target index, tail = opinion index), POS tags, UD dependencies (1-based).
  * raw ASTE-V2 (``<split>_triplets.txt``): ``words####[([a..], [o..], 'POS'), ...]`` with
    0-based inclusive word indices; words are split on whitespace (``str.split()``, as the ASTE-V2 readers do).
    Dependencies come from spaCy (see ``aste.parsing``).

Every problem with an example raises `BadExample` naming the file and the sentence/line. With
``on_bad_example="skip"`` the example is dropped instead and counted in `ReadReport`; nothing is
dropped silently.
"""
from __future__ import annotations

import ast
import codecs
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from models.errors import UserError

log = logging.getLogger(__name__)

SENTIMENT_ALIASES = {"POS": "POS", "POSITIVE": "POS", "NEG": "NEG", "NEGATIVE": "NEG", "NEU": "NEU", "NEUTRAL": "NEU"}


class BadExample(UserError, ValueError):
    """An example that cannot be used, with where it is and why (the message says both)."""

    def __init__(self, where: str, reason: str, kind: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason, self.kind = where, reason, kind


class DataFileError(UserError, ValueError):
    """A data file that cannot be read at all (missing, a folder, not text)."""


@dataclass(frozen=True)
class Triplet:
    aspect: tuple[int, int]  # word span, end exclusive
    opinion: tuple[int, int]
    sentiment: str  # one of SENTIMENTS

    def as_tuple(self) -> tuple:
        return (*self.aspect, *self.opinion, self.sentiment)


@dataclass
class Sentence:
    tokens: list[str]
    triplets: list[Triplet]
    heads: list[int] | None  # dependency head per word, 1-based, 0 = root; None = not parsed yet
    where: str  # "file:line" or "file[#index]" for messages
    parse_mismatch: bool = False  # the file's parse did not match the words; re-parsed


@dataclass
class ReadReport:
    """What a reader skipped or repaired, by kind; written to config.json and the log."""

    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # first few messages, for the log

    def add_skip(self, err: BadExample, on_bad_example: str = "skip") -> None:
        """Count and log a skipped example; unless on_bad_example is "skip", raise it instead."""
        if on_bad_example != "skip":
            raise err
        self.skipped[err.kind] += 1
        if len(self.examples) < 20:
            self.examples.append(str(err))
        log.warning("skipped %s", err)

    def to_dict(self) -> dict:
        return {"skipped": dict(self.skipped), "notes": dict(self.notes), "skipped_examples": self.examples}


def _is_index(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)  # True/False are ints to Python, not indices


def _check_span(where: str, start: int, end: int, n: int, what: str) -> tuple[int, int]:
    if not (_is_index(start) and _is_index(end)):
        raise BadExample(where, f"{what} span {start!r}..{end!r} is not made of integers", "bad_span")
    if start < 0 or end < 0:
        raise BadExample(where, f"{what} span {start}..{end} has a negative index "
                         "(implicit aspects/opinions, written [-1], cannot be extracted by a span model)",
                         "implicit" if -1 in (start, end) else "span_out_of_range")
    if not (start < end <= n):
        raise BadExample(where, f"{what} span [{start}, {end}) is out of range for a sentence of {n} words",
                         "span_out_of_range")
    return start, end


def _check_tokens(where: str, tokens) -> list[str]:
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise BadExample(where, "'tokens' must be a list of strings", "malformed")
    if not tokens:
        raise BadExample(where, "empty sentence (no tokens)", "empty_sentence")
    return tokens


def _sentiment(where: str, label) -> str:
    key = str(label).upper()
    if key not in SENTIMENT_ALIASES:
        raise BadExample(where, f"unknown sentiment label {label!r} (expected one of "
                         f"{sorted(SENTIMENT_ALIASES)})", "bad_label")
    return SENTIMENT_ALIASES[key]


def _check_file(path: str) -> None:
    if os.path.isdir(path):
        raise DataFileError(f"{path}: is a folder, not a data file")
    if not os.path.isfile(path):
        raise DataFileError(f"{path}: data file not found (run `python scripts/get_data.py` to fill data/)")


def _read_text(path: str) -> str:
    _check_file(path)
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is dropped, in every format
            return f.read()
    except UnicodeDecodeError as e:
        with open(path, "rb") as f:
            data = f.read()
        pos = e.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)  # e.start: after the BOM
        line = data[:pos].count(b"\n") + 1
        raise BadExample(f"{path}:{line}", f"not valid UTF-8 ({e.reason} at byte {pos})", "encoding") from None


def parse_d2e2s_item(item, where: str) -> Sentence:
    if not isinstance(item, dict):
        raise BadExample(where, "each sentence must be a JSON object", "malformed")
    for key in ("tokens", "entities", "sentiments"):
        if key not in item:
            raise BadExample(where, f"missing key {key!r}", "malformed")
    for key in ("entities", "sentiments"):
        if not isinstance(item[key], list):
            raise BadExample(where, f"{key!r} must be a list, not {type(item[key]).__name__}", "malformed")
    if item.get("dependency") is not None and not isinstance(item["dependency"], list):
        raise BadExample(where, f"'dependency' must be a list, not {type(item['dependency']).__name__}", "malformed")
    tokens = _check_tokens(where, item["tokens"])
    n = len(tokens)
    entities = []
    for k, ent in enumerate(item["entities"]):
        try:
            etype, start, end = ent["type"], ent["start"], ent["end"]
        except (TypeError, KeyError):
            raise BadExample(where, f"entity #{k} must have type/start/end", "malformed") from None
        if etype not in ("target", "opinion"):
            raise BadExample(where, f"entity #{k} has unknown type {etype!r}", "bad_label")
        entities.append((etype, _check_span(where, start, end, n, f"entity #{k}")))
    triplets = []
    for k, rel in enumerate(item["sentiments"]):
        try:
            head, tail, label = rel["head"], rel["tail"], rel["type"]
        except (TypeError, KeyError):
            raise BadExample(where, f"sentiment #{k} must have type/head/tail", "malformed") from None
        if not (_is_index(head) and _is_index(tail)):
            raise BadExample(where, f"sentiment #{k}: head/tail {head!r}/{tail!r} are not entity numbers", "malformed")
        if not (0 <= head < len(entities) and 0 <= tail < len(entities)):
            raise BadExample(where, f"sentiment #{k} points to entity {head}/{tail}, but there are {len(entities)}",
                             "span_out_of_range")
        if entities[head][0] != "target" or entities[tail][0] != "opinion":
            raise BadExample(where, f"sentiment #{k} must go from a target to an opinion", "malformed")
        triplets.append(Triplet(entities[head][1], entities[tail][1], _sentiment(where, label)))
    parse_words = [p[0] for p in item["pos"]] if isinstance(item.get("pos"), list) else None
    deps = item.get("dependency")
    if deps is not None and (len(deps) != n or (parse_words is not None and parse_words != tokens)):
        # The D2E2S parses of ~15% of sentences were made on another tokenisation (punctuation
        # dropped, '8pm' split...), so their word indices do not match `tokens`. Such a parse is not
        # used; the sentence is re-parsed on its own words (aste.parsing) and counted.
        return Sentence(tokens, triplets, None, where, parse_mismatch=True)
    return Sentence(tokens, triplets, None if deps is None else _dependency_heads(where, deps, n), where)


def _dependency_heads(where: str, deps: list, n: int) -> list[int]:
    """[relation, head, dependent] triples (1-based, head 0 = root) -> the head of each word."""
    heads = [0] * n
    for k, dep in enumerate(deps):
        try:
            _rel, head, child = dep
        except (TypeError, ValueError):
            raise BadExample(where, f"dependency #{k} must be [relation, head, dependent]", "malformed") from None
        if not (_is_index(head) and _is_index(child)):
            raise BadExample(where, f"dependency #{k}: head/dependent {head!r}/{child!r} are not word numbers",
                             "malformed")
        if not (0 <= head <= n and 1 <= child <= n):
            raise BadExample(where, f"dependency #{k} ({head} -> {child}) is out of range for {n} words",
                             "span_out_of_range")
        heads[child - 1] = head
    return heads


def read_d2e2s(path: str, on_bad_example: str = "error", report: ReadReport | None = None) -> list[Sentence]:
    text = _read_text(path)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadExample(f"{path}:{e.lineno}", f"malformed JSON: {e.msg} (column {e.colno})", "malformed") from None
    if not isinstance(items, list):
        raise BadExample(path, "expected a JSON list of sentences", "malformed")
    report = report if report is not None else ReadReport()
    sentences = []
    for i, item in enumerate(items):
        oid = item.get("orig_id") if isinstance(item, dict) else None
        where = f"{path}[sentence #{i}" + (f", orig_id {oid}]" if oid else "]")
        try:
            sentence = parse_d2e2s_item(item, where)
            sentences.append(sentence)
            if sentence.parse_mismatch:
                report.notes["parse_on_other_tokenisation_reparsed"] += 1
        except BadExample as err:
            report.add_skip(err, on_bad_example)
    return sentences


def parse_aste_line(line: str, where: str) -> Sentence:
    if "####" not in line:
        raise BadExample(where, "expected 'sentence####[triplets]' (no '####' separator)", "malformed")
    text, _, labels = line.partition("####")
    tokens = _check_tokens(where, text.split())  # any run of whitespace, as the ASTE-V2 readers: no empty words
    n = len(tokens)
    try:
        raw = ast.literal_eval(labels.strip())  # literals only: never eval()
    except (ValueError, SyntaxError) as e:
        raise BadExample(where, f"malformed triplet list {labels.strip()[:60]!r} ({e.__class__.__name__})",
                         "malformed") from None
    if not isinstance(raw, list):
        raise BadExample(where, "the part after '####' must be a list of (aspect, opinion, sentiment)", "malformed")
    triplets = []
    for k, trip in enumerate(raw):
        if not (isinstance(trip, (tuple, list)) and len(trip) == 3):
            raise BadExample(where, f"triplet #{k} must be (aspect indices, opinion indices, sentiment)", "malformed")
        spans = []
        for what, idx in (("aspect", trip[0]), ("opinion", trip[1])):
            if not (isinstance(idx, list) and idx and all(_is_index(i) for i in idx)):
                raise BadExample(where, f"triplet #{k}: {what} must be a non-empty list of word indices, not {idx!r}",
                                 "malformed")
            if idx != list(range(idx[0], idx[0] + len(idx))) and -1 not in idx:
                raise BadExample(where, f"triplet #{k}: {what} indices {idx} are not consecutive and increasing "
                                 "(a span is [i] or [i, i+1, ..., j])", "bad_span")
            spans.append(_check_span(where, idx[0], idx[-1] + 1, n, f"triplet #{k} {what}"))
        triplets.append(Triplet(spans[0], spans[1], _sentiment(where, trip[2])))
    return Sentence(tokens, triplets, None, where)


def read_aste(path: str, on_bad_example: str = "error", report: ReadReport | None = None) -> list[Sentence]:
    text = _read_text(path)
    report = report if report is not None else ReadReport()
    sentences = []
    lines = text.split("\n")
    while lines and not lines[-1].strip():  # trailing newlines and blank lines end the file
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        where = f"{path}:{lineno}"
        try:
            if not line.strip():
                raise BadExample(where, "empty line", "empty_sentence")
            sentences.append(parse_aste_line(line, where))
        except BadExample as err:
            report.add_skip(err, on_bad_example)
    return sentences


def detect_format(path: str) -> str:
    if path.endswith(".json"):
        return "d2e2s"
    if path.endswith(".txt"):
        return "aste"
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        head = f.read(64).lstrip()
    return "d2e2s" if head.startswith("[") else "aste"


def read_sentences(path: str, data_format: str = "auto", on_bad_example: str = "error",
                   report: ReadReport | None = None) -> list[Sentence]:
    _check_file(path)
    fmt = detect_format(path) if data_format == "auto" else data_format
    reader = {"d2e2s": read_d2e2s, "aste": read_aste}[fmt]
    return reader(path, on_bad_example, report)
