"""Triplets for new sentences from a saved run folder (offline: the folder holds weights, encoder
config, tokenizer files and flags).

    python predict.py --checkpoint Results/14res/<run> --input my_sentences.txt --output triplets.jsonl
    echo "The soup was cold but the staff were lovely ." | python predict.py --checkpoint Results/14res/<run> --input -

Each input line is one of:
  * a plain sentence (tokenised into words by spaCy, as the ASTE data is: "couldn't" -> could n't);
  * a raw ASTE line ``words####[...]`` (words split on spaces; its gold triplets are echoed back);
  * a JSON object with "tokens" (a list of words).
Each output line: {"line", "tokens", "triplets": [{"aspect", "opinion", "sentiment", "aspect_span",
"opinion_span", "score"}]} with end-exclusive word spans.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from aste.evaluator import triplet_record
from aste.input_reader import BadExample, Sentence, parse_aste_line
from aste.parsing import add_parses, load_spacy
from aste.sampling import ASTEDataset, LengthBucketSampler, collate
from aste.trainer import pick_device
from train import load_run


def sentences_from_lines(lines: list[str], source: str, nlp) -> tuple[list[Sentence], list[dict]]:
    """Parse each non-empty line into a Sentence; returns them and any extra fields to echo back."""
    sentences, extras, plain = [], [], []
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        where = f"{source}:{lineno}"
        if not line.strip():
            continue
        if "####" in line:
            s = parse_aste_line(line, where)
            extra = {"gold": [triplet_record(s.tokens, *t.aspect, *t.opinion, ["POS", "NEG", "NEU"].index(t.sentiment))
                              for t in s.triplets]}
        elif line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadExample(where, f"malformed JSON: {e.msg}", "malformed") from None
            tokens = obj.get("tokens")
            if not (isinstance(tokens, list) and tokens and all(isinstance(t, str) for t in tokens)):
                raise BadExample(where, "a JSON line needs 'tokens': a non-empty list of strings", "malformed")
            s, extra = Sentence(tokens, [], None, where), {k: v for k, v in obj.items() if k != "tokens"}
        else:
            s, extra = Sentence([], [], None, where), {}
            plain.append(len(sentences))
        sentences.append(s)
        extras.append({"line": lineno, **extra})
    if plain:  # tokenise plain sentences in one batch
        docs = nlp.tokenizer.pipe(lines[i].strip() for i in [extras[k]["line"] - 1 for k in plain])
        for k, doc in zip(plain, docs):
            sentences[k].tokens = [t.text for t in doc if not t.is_space]
    return sentences, extras


@torch.no_grad()
def predict(run_dir: str, sentences: list[Sentence], device: torch.device, batch_size: int = 32,
            model_and_tokenizer=None) -> list[list[dict]]:
    cfg = json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8"))["args"]
    model, tokenizer = model_and_tokenizer or load_run(run_dir, device)
    data = ASTEDataset(sentences, tokenizer, max_span_size=cfg["max_span_size"], train=False)
    results: list[list[dict]] = [[] for _ in sentences]
    for idx in LengthBucketSampler(data.lengths(), batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in collate([data[i] for i in idx], data.pad_id).items()}
        out = model.predict(batch, cfg["sen_filter_threshold"], cfg["max_pairs"])
        rows = batch["index"].tolist()
        for (row, a0, a1, o0, o1, senti), score in zip(out["triplets"].tolist(), out["triplet_scores"].tolist()):
            sid = rows[row]
            results[sid].append(triplet_record(sentences[sid].tokens, a0, a1, o0, o1, senti, score))
    return [sorted(r, key=lambda t: -t["score"]) for r in results]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="run folder written by train.py")
    ap.add_argument("--input", required=True, help="text/ASTE/JSONL file, or - for standard input")
    ap.add_argument("--output", default="-", help="JSONL file, or - for standard output")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--spacy_model", default="en_core_web_sm", help="for tokenising and parsing new sentences")
    args = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(args.checkpoint, "best.safetensors")):
        raise SystemExit(f"error: {args.checkpoint} holds no best.safetensors (was it trained with --no_checkpoint?)")
    if args.input == "-":
        lines, source = sys.stdin.read().split("\n"), "<stdin>"
    else:
        if not os.path.isfile(args.input):
            raise SystemExit(f"error: --input {args.input}: no such file")
        with open(args.input, encoding="utf-8") as f:
            lines, source = f.read().split("\n"), args.input
    device = pick_device(args.device)
    nlp = load_spacy(args.spacy_model)
    try:
        sentences, extras = sentences_from_lines(lines, source, nlp)
    except BadExample as err:
        raise SystemExit(f"error: {err}") from None
    add_parses(sentences, nlp=nlp)
    t0 = time.perf_counter()
    triplets = predict(args.checkpoint, sentences, device, args.batch_size)
    seconds = time.perf_counter() - t0
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    for s, extra, trips in zip(sentences, extras, triplets):
        out.write(json.dumps({**extra, "tokens": s.tokens, "triplets": trips}, ensure_ascii=False) + "\n")
    if out is not sys.stdout:
        out.close()
    print(f"{len(sentences)} sentences, {sum(map(len, triplets))} triplets, {seconds:.2f} s "
          f"(model load + prediction)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
