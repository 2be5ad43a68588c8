"""Raw ASTE files (``words####[([a], [o], 'POS'), ...]``) -> D2E2S JSON with POS tags and dependencies.

    python scripts/convert_aste.py --input my_train_triplets.txt --output my_train.json
    python scripts/convert_aste.py --all      # data/aste-v2/<ds>/* -> data/d2e2s-spacy/<ds>/*

spaCy parses the file's own words (ClearNLP-style labels; the model only uses the unlabelled tree). Each
triplet becomes a target and an opinion entity and a sentiment between them, as in the D2E2S release.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aste.atomic import write_json  # noqa: E402
from aste.input_reader import BadExample, ReadReport, read_aste  # noqa: E402
from aste.parsing import load_spacy  # noqa: E402
from scripts.get_data import DATASETS, SPLITS  # noqa: E402

LONG = {"POS": "POSITIVE", "NEG": "NEGATIVE", "NEU": "NEUTRAL"}


def convert_file(src: str, dst: str, nlp, on_bad_example: str = "error") -> ReadReport:
    from spacy.tokens import Doc
    report = ReadReport()
    sentences = read_aste(src, on_bad_example, report)
    docs = nlp.pipe((Doc(nlp.vocab, words=[w if w.strip() else "_" for w in s.tokens]) for s in sentences),
                    batch_size=256)
    items = []
    for s, doc in zip(sentences, docs):
        entities = [{"type": kind, "start": span[0], "end": span[1]}
                    for t in s.triplets for kind, span in (("target", t.aspect), ("opinion", t.opinion))]
        sentiments = [{"type": LONG[t.sentiment], "head": 2 * k, "tail": 2 * k + 1} for k, t in enumerate(s.triplets)]
        items.append({"entities": entities, "sentiments": sentiments,
                      "pos": [[w, tok.tag_] for w, tok in zip(s.tokens, doc)], "orig_id": s.where, "tokens": s.tokens,
                      "dependency": [["ROOT" if tok.head.i == tok.i else tok.dep_,
                                      0 if tok.head.i == tok.i else tok.head.i + 1, tok.i + 1] for tok in doc]})
    write_json(items, dst)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", help="one raw ASTE file")
    ap.add_argument("--output", help="the JSON file to write")
    ap.add_argument("--all", action="store_true", help="convert data/aste-v2/<ds>/<split>_triplets.txt for all four datasets")
    ap.add_argument("--out_dir", default="data/d2e2s-spacy", help="target of --all")
    ap.add_argument("--spacy_model", default="en_core_web_sm")
    ap.add_argument("--on_bad_example", default="error", choices=["error", "skip"])
    args = ap.parse_args(argv)
    if not args.all and not (args.input and args.output):
        ap.error("give --input and --output, or --all")
    nlp = load_spacy(args.spacy_model)
    jobs = [(args.input, args.output)] if not args.all else [
        (os.path.join("data", "aste-v2", ds, f"{sp}_triplets.txt"),
         os.path.join(args.out_dir, ds, f"{sp}_dep_triple_polarity_result.json")) for ds in DATASETS for sp in SPLITS]
    for src, dst in jobs:
        try:
            report = convert_file(src, dst, nlp, args.on_bad_example)
        except (BadExample, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        skipped = sum(report.skipped.values())
        print(f"{src} -> {dst}" + (f" ({skipped} skipped: {dict(report.skipped)})" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
