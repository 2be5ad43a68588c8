"""Triplets for new sentences from a saved run folder (offline: the folder holds weights, encoder
config, tokenizer files and flags). A command line over `aste.Predictor`.

    python predict.py --checkpoint Results/14res/<run> --input my_sentences.txt --output triplets.jsonl
    echo "The soup was cold but the staff were lovely ." | python predict.py --checkpoint Results/14res/<run> --input -

Each input line is one of:
  * a plain sentence (split into words by spaCy, as the ASTE data is: "couldn't" -> could n't);
  * a raw ASTE line ``words####[...]`` (words split on spaces; its gold triplets are echoed back);
  * a JSON object with "tokens" (a list of words); its other fields are echoed back.
Each output line: {"line", "tokens", "triplets": [{"aspect", "opinion", "sentiment", "aspect_span",
"opinion_span", "score"}]} with end-exclusive word spans. A line the model cannot take (e.g. longer
than the encoder's limit) gets {"line", "error"} and a message on stderr (--on_bad_example skip, the
default), or stops the job (--on_bad_example error).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from aste.atomic import write_jsonl
from aste.errors import run_cli
from aste.evaluator import triplet_record
from aste.input_reader import BadExample, Sentence, parse_aste_line
from aste.predictor import Predictor
from models.labels import SENTIMENTS


OUTPUT_FIELDS = {"line", "triplets", "error", "gold"}


def read_lines(lines: list[str], source: str, on_bad_example: str) -> tuple[list, list[dict]]:
    """Each non-empty line -> a Predictor input (string, word list or Sentence) and the fields to echo."""
    inputs, extras = [], []
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        where = f"{source}:{lineno}"
        if not line.strip():
            continue
        try:
            if "####" in line:
                s = parse_aste_line(line, where)
                gold = [triplet_record(s.tokens, *t.aspect, *t.opinion, SENTIMENTS.index(t.sentiment)) for t in s.triplets]
                item, extra = s, {"gold": gold}
            elif line.lstrip().startswith("{"):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadExample(where, f"malformed JSON: {e.msg}", "malformed") from None
                tokens = obj.get("tokens") if isinstance(obj, dict) else None
                if not (isinstance(tokens, list) and tokens and all(isinstance(t, str) for t in tokens)):
                    raise BadExample(where, "a JSON line needs 'tokens': a non-empty list of strings", "malformed")
                # the line's other fields are echoed back; one named like an output field gets an "input_" prefix
                extra = {(f"input_{k}" if k in OUTPUT_FIELDS else k): v for k, v in obj.items() if k != "tokens"}
                item = Sentence(tokens, [], None, where)
            else:
                item, extra = line.strip(), {}
        except BadExample as err:
            if on_bad_example == "error":
                raise
            print(f"skipped {err}", file=sys.stderr)
            item, extra = None, {"error": str(err)}
        inputs.append(item)
        extras.append({"line": lineno, **extra})
    return inputs, extras


def check_output_path(path: str) -> None:
    """Before any work: the output's folder exists and is writable, and the path is not a folder."""
    if path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise SystemExit(f"error: --output {path}: is a folder")
    if not os.path.isdir(folder):
        raise SystemExit(f"error: --output {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise SystemExit(f"error: --output {path}: folder {folder} is not writable")


def read_input(path: str) -> tuple[list[str], str]:
    if path == "-":
        return sys.stdin.read().split("\n"), "<stdin>"
    if not os.path.isfile(path):
        raise SystemExit(f"error: --input {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().split("\n"), path
    except UnicodeDecodeError as e:
        raise SystemExit(f"error: --input {path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="run folder written by train.py")
    ap.add_argument("--input", required=True, help="text/ASTE/JSONL file, or - for standard input")
    ap.add_argument("--output", default="-", help="JSONL file, or - for standard output")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--spacy_model", default="en_core_web_sm", help="for tokenising and parsing new sentences")
    ap.add_argument("--on_bad_example", default="skip", choices=["skip", "error"],
                    help="a line the model cannot take gets an 'error' record (skip) or stops the job (error)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit("error: --batch_size must be >= 1")
    check_output_path(args.output)
    lines, source = read_input(args.input)
    inputs, extras = read_lines(lines, source, args.on_bad_example)
    predictor = Predictor.from_run(args.checkpoint, args.device, args.spacy_model)
    t0 = time.perf_counter()
    usable = [k for k, x in enumerate(inputs) if x is not None]
    results = predictor.predict([inputs[k] for k in usable], args.batch_size, args.on_bad_example,
                                names=[f"{source}:{extras[k]['line']}" for k in usable])
    seconds = time.perf_counter() - t0
    records = [dict(extra) for extra in extras]
    for k, r in zip(usable, results):
        if "error" in r:
            print(f"skipped {r['error']}", file=sys.stderr)
            records[k]["error"] = r["error"]
        else:
            records[k].update(tokens=r["tokens"], triplets=r["triplets"])
    if args.output == "-":
        for rec in records:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
    else:
        write_jsonl(records, args.output)  # atomic: never a cut-off file
    print(f"{len(records)} sentences, {sum(len(r.get('triplets', [])) for r in records)} triplets, "
          f"{sum('error' in r for r in records)} skipped, {seconds:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
