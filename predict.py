"""Triplets for new sentences from a saved model: a run folder, a folder written by
`Predictor.export`, or a Hugging Face Hub id owner/name (downloaded once into the Hugging Face cache;
HF_HUB_OFFLINE=1 uses the cache alone). A folder holds weights, encoder config, tokenizer files and
flags: no network needed. A command line over `aste.Predictor`.

    python predict.py --checkpoint Results/14res/<run> --input my_sentences.txt --output triplets.jsonl
    echo "The soup was cold but the staff were lovely ." | python predict.py --checkpoint Results/14res/<run> --input -
    python predict.py --checkpoint owner/name --input my_sentences.txt --output triplets.jsonl

Each input line is one of:
  * a plain sentence (split into words by spaCy, as the ASTE data is: "couldn't" -> could n't);
  * a raw ASTE line ``words####[...]`` (words split on spaces; its gold triplets are echoed back);
  * a JSON object with "tokens" (a list of words); its other fields are echoed back.
Each output line: {"line", "tokens", "triplets": [{"aspect", "opinion", "sentiment", "aspect_span",
"opinion_span", "score"}]} with end-exclusive word spans. A line the model cannot take (e.g. longer
than the encoder's limit) gets {"line", "error"} and a message on stderr (--on_bad_example skip, the
default), or stops the job (--on_bad_example error); so does a line that is not UTF-8 text.

The input is read, predicted and written a chunk of lines at a time (memory does not grow with its
length). --output FILE is written atomically: records go to a temporary file beside it, renamed over
FILE at the end, so FILE is complete or untouched (an error or Ctrl-C removes the temporary file). FILE
must be new or an existing regular file (its permission bits are kept). --output - streams the records
to standard output as they are made. A progress bar is shown on stderr when it is a terminal
(--progress / --no-progress to choose).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import stat
import sys
import time

import torch
from tqdm import tqdm

from aste.atomic import atomic_write
from aste.cli import run_cli
from aste.evaluator import triplet_record
from aste.input_reader import BadExample, DataFileError, Sentence, parse_aste_line
from aste.predictor import Predictor
from models.errors import UserError
from models.labels import SENTIMENTS


OUTPUT_FIELDS = {"line", "triplets", "error", "gold"}
CHUNK_LINES = 2000  # lines read, parsed, predicted and written at a time
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class OutputPathError(UserError):
    """--output names something that must not be replaced (a folder, a link, a FIFO, a device)."""


def numbered_lines(stream, source: str):
    """(line number, text) of each line of a byte stream, decoded one line at a time; a line that is not
    UTF-8 comes as a BadExample naming it. Lines end as in text mode (\\n, \\r\\n or \\r); a UTF-8 BOM
    opening the stream is dropped."""
    lineno = 0
    for k, raw in enumerate(stream):
        if k == 0 and raw.startswith(UTF16_BOMS):
            raise DataFileError(f"{source}: not UTF-8 text (it starts with a UTF-16 byte-order mark; convert it, "
                                "e.g. iconv -f UTF-16 -t UTF-8)")
        try:
            text = raw.decode("utf-8-sig" if k == 0 else "utf-8")
        except UnicodeDecodeError as e:
            lineno += 1
            yield lineno, BadExample(f"{source}:{lineno}", f"not UTF-8 text (byte {e.start + 1} of the line: "
                                     f"{e.reason})", "malformed")
            continue
        for part in text.removesuffix("\n").removesuffix("\r").split("\r"):
            lineno += 1
            yield lineno, part


def read_line(line: str, where: str) -> tuple:
    """One non-empty line -> a Predictor input (string, or Sentence) and the fields to echo."""
    if "####" in line:
        s = parse_aste_line(line, where)
        gold = [triplet_record(s.tokens, *t.aspect, *t.opinion, SENTIMENTS.index(t.sentiment)) for t in s.triplets]
        return s, {"gold": gold}
    if line.lstrip().startswith("{"):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadExample(where, f"malformed JSON: {e.msg}", "malformed") from None
        tokens = obj.get("tokens") if isinstance(obj, dict) else None
        if not (isinstance(tokens, list) and tokens and all(isinstance(t, str) for t in tokens)):
            raise BadExample(where, "a JSON line needs 'tokens': a non-empty list of strings", "malformed")
        # the line's other fields are echoed back; one named like an output field gets an "input_" prefix
        extra = {(f"input_{k}" if k in OUTPUT_FIELDS else k): v for k, v in obj.items() if k != "tokens"}
        return Sentence(tokens, [], None, where), extra
    return line.strip(), {}


def read_lines(lines, source: str, on_bad_example: str) -> tuple[list, list[dict]]:
    """(line number, text or BadExample) pairs -> Predictor inputs (None for a bad line) and the fields to
    echo, for each non-empty line."""
    inputs, extras = [], []
    for lineno, line in lines:
        if isinstance(line, str) and not line.strip():
            continue
        try:
            if isinstance(line, BadExample):
                raise line
            item, extra = read_line(line, f"{source}:{lineno}")
        except BadExample as err:
            if on_bad_example == "error":
                raise
            tqdm.write(f"skipped {err}", file=sys.stderr)
            item, extra = None, {"error": str(err)}
        inputs.append(item)
        extras.append({"line": lineno, **extra})
    return inputs, extras


def predict_chunks(predictor: Predictor, lines, source: str, args, bar):
    """The output records, a list per chunk of CHUNK_LINES input lines."""
    while chunk := list(itertools.islice(lines, CHUNK_LINES)):
        inputs, extras = read_lines(chunk, source, args.on_bad_example)
        usable = [k for k, x in enumerate(inputs) if x is not None]
        results = predictor.predict([inputs[k] for k in usable], args.batch_size, args.on_bad_example,
                                    names=[f"{source}:{extras[k]['line']}" for k in usable], progress=bar.update)
        bar.update(len(chunk) - len(usable))
        for k, r in zip(usable, results):
            if "error" in r:
                tqdm.write(f"skipped {r['error']}", file=sys.stderr)
                extras[k]["error"] = r["error"]
            else:
                extras[k].update(tokens=r["tokens"], triplets=r["triplets"])
        yield extras


def check_output_path(path: str) -> int | None:
    """Before any work: --output is -, a new file in a writable folder, or an existing regular file (not a
    link, FIFO or device: renaming over it would replace it); returns that file's permission bits."""
    if path == "-":
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"--output {path}: is a folder")
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file (a FIFO, device or socket)"
        raise OutputPathError(f"--output {path}: is {kind}; give a new path or a regular file (- for standard "
                              "output)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputPathError(f"--output {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputPathError(f"--output {path}: folder {folder} is not writable")
    return None if st is None else stat.S_IMODE(st.st_mode)


@contextlib.contextmanager
def open_input(path: str, count: bool):
    """(byte stream, its name in messages, its number of lines if `count`, else None), checked before any work."""
    if path == "-":
        yield sys.stdin.buffer, "<stdin>", None
        return
    if os.path.isdir(path):
        raise DataFileError(f"--input {path}: is a folder")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataFileError(f"--input {path}: no such file") from None
    except OSError as err:
        raise DataFileError(f"--input {path}: cannot be read ({err.strerror})") from None
    with f:
        # a FIFO is not counted: that would use it up
        yield f, path, count_lines(path) if count and os.path.isfile(path) else None


def count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def write_records(chunks, out, counts: dict) -> None:
    for records in chunks:
        for rec in records:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        out.flush()
        counts["sentences"] += len(records)
        counts["triplets"] += sum(len(r.get("triplets", [])) for r in records)
        counts["skipped"] += sum("error" in r for r in records)


def write_output(chunks, path: str, counts: dict) -> None:
    """To standard output as made, or into a temporary file renamed over `path` at the end."""
    if path == "-":
        return write_records(chunks, sys.stdout, counts)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            write_records(chunks, f, counts)
        mode = check_output_path(path)  # again: what is there now is still new or a regular file
        if mode is not None:
            os.chmod(tmp, mode)  # the replaced file's permission bits
    atomic_write(path, write)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True,
                    help="run folder written by train.py, folder written by Predictor.export, or Hugging Face Hub "
                         "id owner/name")
    ap.add_argument("--input", required=True, help="text/ASTE/JSONL file, or - for standard input")
    ap.add_argument("--output", default="-", help="JSONL file (new, or a regular file to replace), or - for "
                                                  "standard output")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar on stderr (default: when stderr is a terminal)")
    ap.add_argument("--spacy_model", default="en_core_web_sm", help="for tokenising and parsing new sentences")
    ap.add_argument("--on_bad_example", default="skip", choices=["skip", "error"],
                    help="a line the model cannot take gets an 'error' record (skip) or stops the job (error)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    for flag in ("batch_size", "threads"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SystemExit(f"error: --{flag} must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    check_output_path(args.output)
    show_bar = sys.stderr.isatty() if args.progress is None else args.progress  # the line count is for the bar
    with open_input(args.input, show_bar) as (stream, source, total):
        if args.threads:
            torch.set_num_threads(args.threads)
        predictor = Predictor.from_pretrained(args.checkpoint, args.device, args.spacy_model)
        t0, counts = time.perf_counter(), dict.fromkeys(("sentences", "triplets", "skipped"), 0)
        # by default on a terminal only, once the job has run 2 s (none for a short input)
        with tqdm(total=total, unit=" lines", file=sys.stderr, dynamic_ncols=True, delay=2 if args.progress is None
                  else 0, disable=None if args.progress is None else not args.progress) as bar:
            try:
                write_output(predict_chunks(predictor, numbered_lines(stream, source), source, args, bar),
                             args.output, counts)
            except KeyboardInterrupt:
                bar.close()
                print(f"error: interrupted{'' if args.output == '-' else f'; {args.output} not written'}",
                      file=sys.stderr)
                return 130
    print(f"{counts['sentences']} sentences, {counts['triplets']} triplets, {counts['skipped']} skipped, "
          f"{time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill removes the temporary file too
    sys.exit(run_cli(main))
