"""Sharing a trained model: a self-contained folder in Hugging Face conventions, loaded by path or
from the Hugging Face Hub.

    from aste import Predictor
    Predictor.from_run("Results/14res/<run>").export("shared/14res-minilm")  # a finished run -> folder
    Predictor.from_pretrained("shared/14res-minilm")   # an exported folder (or a run folder)
    Predictor.from_pretrained("owner/name")            # a Hub repo holding an exported folder

An exported folder holds:

  config.json         the model config, the decoding settings ('decoding'), the run's flags ('args'),
                      encoder, data report, environment and summary (scores) of the run
  model.safetensors   the weights of the best-dev epoch (safetensors: never pickled)
  encoder/            encoder config + tokenizer files (AutoTokenizer.from_pretrained(folder, subfolder="encoder"))
  README.md           model card: data and licences, encoder, training command, scores, use and limits

Hub ids go through huggingface_hub.snapshot_download (its cache; HF_HUB_OFFLINE=1 uses the cache
alone) and only the files above are fetched. No file of the folder is ever run as code.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil

from safetensors.torch import save_model

from models.decoding import OVERLAP_FILTERS

from .atomic import TEMP_MARK, atomic_write, write_json
from .encoding import encoder_max_length
from .runs import BEFORE_FLAG_EXISTED, RunFolder, RunFolderError, load_run, saved_flag

WEIGHTS = "model.safetensors"
# what is fetched from the Hub: no pickle, no Python file (tokenizers: *.json, vocab.txt/merges.txt, *.model)
HUB_FILES = ["config.json", WEIGHTS, "README.md", "encoder/*.json", "encoder/*.txt", "encoder/*.model"]
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# encoder folder name (lower case) -> (Hub id, licence)
ENCODERS = {"all-minilm-l6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "Apache-2.0"),
            "deberta-v3-base": ("microsoft/deberta-v3-base", "MIT"),
            "all-mpnet-base-v2": ("sentence-transformers/all-mpnet-base-v2", "Apache-2.0")}
DATASETS = {"14res": "SemEval-2014 Task 4, restaurant reviews", "14lap": "SemEval-2014 Task 4, laptop reviews",
            "15res": "SemEval-2015 Task 12, restaurant reviews", "16res": "SemEval-2016 Task 5, restaurant reviews"}
NOT_IN_COMMAND = {"config", "resume", "eval_only", "checkpoint", "debug", "use_cross_attention", "help"}


class ExportedFolder(RunFolder):
    """An exported folder read as a run folder: its weights are model.safetensors."""

    def file(self, name: str) -> str:
        return super().file(WEIGHTS if name == "best.safetensors" else name)


_MISSING = object()


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# the decoding settings and the checks Parameter.py makes of their flags: (test, what a value must be)
DECODING_CHECKS = {
    "max_span_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "sen_filter_threshold": (lambda v: (_is_int(v) or isinstance(v, float)) and 0 <= v < 1, "a number in [0, 1)"),
    "max_pairs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "overlap_filter": (lambda v: v in OVERLAP_FILTERS, "one of " + ", ".join(OVERLAP_FILTERS)),
}


def decoding_settings(config: dict, path: str = "config.json") -> dict:
    """What the Predictor decodes with, from a config.json (`path`, for messages): its 'decoding' section (an
    exported folder), or the run's flags in 'args' (a run that predates --overlap_filter decoded with 'none').
    A missing or bad value is one RunFolderError naming the file and the key."""
    section = "decoding" if "decoding" in config else "args"
    saved = config.get(section)
    if not isinstance(saved, dict):
        raise RunFolderError(f"{path}: '{section}' is not a JSON object")
    settings = {}
    for key, (ok, rule) in DECODING_CHECKS.items():
        value = saved_flag(saved, key, _MISSING) if section == "args" else saved.get(key, _MISSING)
        if value is _MISSING:
            raise RunFolderError(f"{path}: '{section}.{key}' is missing (it must be {rule})")
        if not ok(value):
            raise RunFolderError(f"{path}: '{section}.{key}' must be {rule} (got {value!r})")
        settings[key] = value
    return settings


def local_folder(path_or_hub_id: str, revision: str | None = None) -> str:
    """A folder on this machine: the path itself (a folder here wins over a Hub id of the same name), or
    the Hub repo's snapshot in the Hugging Face cache."""
    if os.path.isdir(path_or_hub_id):
        return path_or_hub_id
    if os.path.exists(path_or_hub_id) or not HUB_ID.fullmatch(path_or_hub_id):
        raise RunFolderError(f"{path_or_hub_id}: no such folder (give a run folder, an exported model folder "
                             "or a Hugging Face Hub id owner/name)")
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(path_or_hub_id, revision=revision, allow_patterns=HUB_FILES)
    except Exception as err:  # noqa: BLE001 - offline, unknown repo, no access, no network...: one line
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise RunFolderError(f"{path_or_hub_id}: not a folder here, and the Hugging Face Hub gave no model "
                             f"({err.__class__.__name__}: {first})") from err


def load_folder(path: str, device):
    """(model, tokenizer, config) from an exported folder or a run folder."""
    exported = os.path.isfile(os.path.join(path, WEIGHTS))
    return load_run(ExportedFolder(path) if exported else RunFolder(path), device)


def export_folder(model, tokenizer, config: dict, out_dir: str, *, overwrite: bool = False, license: str = "other",
                  repo_id: str | None = None, source: str | None = None) -> str:
    """Write `out_dir` (see the module docstring); each file atomically, encoder/ swapped in whole."""
    if "summary" not in config:
        raise RunFolderError(f"{source or 'this model'}: an unfinished run (its config.json has no 'summary'); "
                             "export it once train.py has finished it")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RunFolderError(f"{out_dir}: is a file, not a folder")
    if os.path.isfile(os.path.join(out_dir, "best.safetensors")):
        raise RunFolderError(f"{out_dir}: is a run folder; export to a folder of its own")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise RunFolderError(f"{out_dir}: is not empty (pass overwrite=True to replace the exported files in it)")
    os.makedirs(out_dir, exist_ok=True)
    write_encoder_files(model.encoder.config, tokenizer, os.path.join(out_dir, "encoder"))
    atomic_write(os.path.join(out_dir, WEIGHTS), lambda t: save_model(model, t, metadata={"format": "pt"}))
    exported = {k: v for k, v in config.items() if k != "run_dir"} | {"decoding": decoding_settings(config)}
    name = repo_id or os.path.basename(os.path.normpath(os.path.abspath(out_dir)))
    card = model_card(exported, name, license, encoder_max_length(tokenizer, model.encoder.config), repo_id)

    def write_card(t):
        with open(t, "w", encoding="utf-8") as f:
            f.write(card)
    atomic_write(os.path.join(out_dir, "README.md"), write_card)
    write_json(exported, os.path.join(out_dir, "config.json"))  # last: a cut-off export does not load
    return out_dir


def write_encoder_files(encoder_config, tokenizer, folder: str) -> None:
    """Encoder config + tokenizer files, written beside `folder` and swapped in whole."""
    tmp, old = f"{folder}{TEMP_MARK}{os.getpid()}", f"{folder}.old{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    encoder_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if os.path.isdir(folder):
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def training_command(args: dict) -> str:
    """`python train.py ...` with the flags of `args` that differ from the parser's defaults."""
    from Parameter import build_parser, flag_words, parse_args
    defaults, saved = vars(parse_args([])), {**BEFORE_FLAG_EXISTED, **args}
    words = []
    for action in build_parser()._actions:
        dest, value = action.dest, saved.get(action.dest)
        if not action.option_strings or dest in NOT_IN_COMMAND or value is None or value == defaults.get(dest):
            continue
        if flag := flag_words(action, value):
            words.append(shlex.join(flag))
    lines = ["python train.py"]
    for w in words:  # continuation lines of at most about 100 characters
        lines[-1:] = [f"{lines[-1]} {w}"] if len(lines[-1]) + len(w) < 96 else [lines[-1], "    " + w]
    return " \\\n".join(lines)


def card_metadata(config: dict, name: str, license: str, data_name: str, base_model: str | None) -> str:
    from huggingface_hub import EvalResult, ModelCardData
    s = config["summary"]
    results = [EvalResult(task_type="aspect-sentiment-triplet-extraction", task_name="Aspect Sentiment Triplet "
                          "Extraction", dataset_type="aste-data-v2", dataset_name=data_name, dataset_split=split,
                          metric_type="f1", metric_name=f"{label} triplet F1", metric_value=round(s[key], 2))
               for split, label, key in (("test", "test", "test_triplet_f1"), ("validation", "dev", "dev_triplet_f1"))]
    data = ModelCardData(language="en", license=license, library_name="d2e2s-aste", base_model=base_model,
                         tags=["aspect-sentiment-triplet-extraction", "absa"], datasets=["ASTE-Data-V2"],
                         metrics=["f1"], model_name=name, eval_results=results)
    return f"---\n{data.to_yaml()}\n---\n"


CARD = """
# {name}

Aspect Sentiment Triplet Extraction (ASTE): from an English review sentence, every (aspect term,
opinion term, sentiment) triplet. A D2E2S-style span model (encoder, BiLSTM, syntactic and semantic
GCNs, `{fusion}` fusion, span and pair heads) trained with `train.py` of the D2E2S-style ASTE
training CLI and exported with `Predictor.export`.

## Scores

At the best dev epoch ({best_epoch} of {epochs}, chosen on dev triplet F1): dev triplet F1 {dev_f1:.2f};
test triplet P {test_p:.2f} / R {test_r:.2f} / F1 {test_f1:.2f} (exact match of aspect span, opinion
span and sentiment; decoding: `{overlap_filter}` overlap filter, sentiment threshold {threshold}).

## How to use

With the project's code (`aste`, `models`, `predict.py`; `pip install -r requirements.txt`):

```python
from aste import Predictor
p = Predictor.from_pretrained("{where}")   # a Hub id owner/name, or this folder's path
p.predict("The soup was cold but the staff were lovely .")
```

```bash
python predict.py --checkpoint {where} --input sentences.txt --output triplets.jsonl
```

## Training data

{data}.

ASTE-Data-V2 (Xu et al., 2020, "Position-Aware Tagging for Aspect Sentiment Triplet Extraction") is
built on the SemEval 2014/2015/2016 aspect-based sentiment analysis restaurant and laptop reviews.
The SemEval data are for research use: check the original SemEval terms before any other use. The
D2E2S preprocessing (dependency parses, JSON format) is under the MIT licence.

## Encoder and licence

Encoder: {encoder}.

The licence of these weights (`license: {license}` above) is set by whoever exported them; they
derive from the encoder and the data above.

## Training command

```bash
{command}
```

or `python train.py --config config.json` with this folder's config.json (file paths in it are
those of the machine the model was trained on).

## Intended use and limits

* Research on English review sentences in the restaurant and laptop domains. Scores drop under
  domain shift (other products, other genres, non-review text).
* Explicit aspects only: an aspect or opinion that is not written in the sentence is not found.
* Word-level spans: word indices (end exclusive) after spaCy tokenisation as in the ASTE data
  (`couldn't` -> `could n't`); aspect and opinion spans of at most {max_span_size} words.
* Sentence length: at most the encoder's limit of {max_length} subword positions; a longer sentence
  is refused, not truncated.
"""


def model_card(config: dict, name: str, license: str, max_length: int, repo_id: str | None = None) -> str:
    """README.md: YAML front matter (Hub metadata, model-index with dev and test triplet F1) and CARD."""
    args, s, d = config["args"], config["summary"], config["decoding"]
    t = s["test_at_best_dev"]["triplet"]
    enc_name = config.get("encoder", {}).get("name") or args.get("pretrained_deberta_name", "?")
    base_model, enc_licence = ENCODERS.get(os.path.basename(os.path.normpath(enc_name)).lower(), (None, None))
    dataset = args.get("dataset", "?")
    body = CARD.format(
        name=name, fusion=config.get("model", {}).get("fusion", args.get("fusion")), best_epoch=s["best_epoch"],
        epochs=args.get("epochs", "?"), dev_f1=s["dev_triplet_f1"], test_p=t["p"], test_r=t["r"],
        test_f1=s["test_triplet_f1"], overlap_filter=d["overlap_filter"], threshold=d["sen_filter_threshold"],
        where=repo_id or f"path/to/{name}", license=license, command=training_command(args),
        max_span_size=d["max_span_size"], max_length=max_length,
        data=(f"ASTE-Data-V2 `{dataset}`: {DATASETS[dataset]}" if dataset in DATASETS and not args.get("train_file")
              else f"`{dataset}`: the files in config.json's 'data', in an ASTE-Data-V2 format"),
        encoder=(f"[{base_model}](https://huggingface.co/{base_model}), licence {enc_licence}" if base_model
                 else f"`{enc_name}`; for its licence see the encoder's own model card"))
    return card_metadata(config, name, license, f"ASTE-Data-V2 {dataset}", base_model) + body
