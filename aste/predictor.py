"""Triplets for new sentences from a run folder, an exported folder or a Hugging Face Hub repo:

    from aste import Predictor
    p = Predictor.from_pretrained("Results/14res/<run>")   # a run folder (same as Predictor.from_run)
    p.predict("The soup was cold but the staff were lovely .")   # one sentence -> a list of one record
    # -> [{"sentence": ..., "tokens": [...], "triplets": [{"aspect": "soup", "opinion": "cold",
    #      "sentiment": "NEG", "aspect_span": [1, 2], "opinion_span": [3, 4], "score": 0.98}, ...]}]
    p.export("shared/14res-minilm")                      # self-contained folder with a model card
    Predictor.from_pretrained("shared/14res-minilm")     # that folder, or "owner/name" on the Hub

A sentence is a string (split into words by spaCy, as the ASTE data is: "couldn't" -> could n't),
a list of words, or an `aste.input_reader.Sentence`. Every sentence without a dependency parse is
parsed by spaCy on its own words; none is left with an empty graph. Spans are word indices, end
exclusive.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

from .encoding import encoder_max_length
from .environment import pick_device
from .evaluator import triplet_record
from .export import decoding_settings, export_folder, load_folder, local_folder
from .input_reader import ReadReport, Sentence
from .parsing import add_parses, load_spacy
from .sampling import ASTEDataset, LengthBucketSampler, collate

class Predictor:
    def __init__(self, model, tokenizer, config: dict, device: torch.device, spacy_model: str = "en_core_web_sm",
                 config_path: str = "config.json"):
        """config_path: the file `config` was read from (named by the message of a bad decoding setting)."""
        self.model, self.tokenizer, self.config, self.device = model, tokenizer, config, device
        self.spacy_model, self.source = spacy_model, None  # source: the folder or Hub id it came from
        d = decoding_settings(config, config_path)
        self.max_span_size, self.threshold, self.max_pairs, self.overlap = (
            d["max_span_size"], d["sen_filter_threshold"], d["max_pairs"], d["overlap_filter"])

    @classmethod
    def from_run(cls, run_dir: str, device: str = "auto", spacy_model: str = "en_core_web_sm") -> "Predictor":
        device = pick_device(device) if isinstance(device, str) else device
        model, tokenizer, config = load_folder(run_dir, device)  # an exported folder loads too
        predictor = cls(model, tokenizer, config, device, spacy_model, os.path.join(run_dir, "config.json"))
        predictor.source = run_dir
        return predictor

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str, device: str = "auto", spacy_model: str = "en_core_web_sm",
                        revision: str | None = None) -> "Predictor":
        """A run folder, a folder written by export(), or a Hugging Face Hub id "owner/name" (through the
        Hugging Face cache; HF_HUB_OFFLINE=1 uses the cache alone). A folder or id that cannot be had
        raises RunFolderError with one line."""
        device = pick_device(device) if isinstance(device, str) else device
        folder = local_folder(path_or_hub_id, revision)
        model, tokenizer, config = load_folder(folder, device)
        predictor = cls(model, tokenizer, config, device, spacy_model, os.path.join(folder, "config.json"))
        predictor.source = path_or_hub_id
        return predictor

    def export(self, out_dir: str, overwrite: bool = False, license: str = "other", repo_id: str | None = None) -> str:
        """A self-contained folder: model.safetensors, config.json (model, decoding settings, the run's
        flags and scores), encoder/ (config, tokenizer) and a model card README.md (license: the card's
        licence field; repo_id: the Hub id the card's examples load). Refuses an unfinished run, and a
        non-empty folder unless overwrite=True. Upload it with `hf upload owner/name out_dir` (or
        huggingface_hub.create_repo + upload_folder(repo_id=..., folder_path=out_dir))."""
        return export_folder(self.model, self.tokenizer, self.config, out_dir, overwrite=overwrite, license=license,
                             repo_id=repo_id, source=self.source)

    def to_sentences(self, inputs, names: list[str] | None = None) -> list[Sentence]:
        """Strings and word lists -> Sentence objects with words and dependency heads (spaCy).
        names: what messages call each input (default "sentence #k")."""
        inputs = one_or_many(inputs)
        sentences, plain = [], []
        for k, x in enumerate(inputs):
            where = names[k] if names else f"sentence #{k}"
            if isinstance(x, Sentence):
                sentences.append(x)
            elif isinstance(x, str):
                sentences.append(Sentence([], [], None, where))
                plain.append((k, x))
            elif isinstance(x, (list, tuple)) and all(isinstance(w, str) for w in x):
                sentences.append(Sentence(list(x), [], None, where))
            else:
                raise TypeError(f"{where}: expected a string, a list of words or a Sentence, got {type(x).__name__}")
        if plain:
            nlp = load_spacy(self.spacy_model)
            for (k, text), doc in zip(plain, nlp.tokenizer.pipe(text.strip() for _, text in plain)):
                sentences[k].tokens = [t.text for t in doc if not t.is_space]
        todo = [s for s in sentences if s.heads is None and s.tokens]
        if todo:
            add_parses(todo, nlp=load_spacy(self.spacy_model))
        return sentences

    @torch.no_grad()
    def predict(self, inputs, batch_size: int = 32, on_bad_example: str = "error",
                names: list[str] | None = None, progress: Callable[[int], object] | None = None) -> list[dict]:
        """One record per input: {"sentence" (the string, if one was given), "tokens", "triplets"}
        with triplets best score first. A sentence the model cannot take (empty, longer than the
        encoder's limit) raises BadExample, or with on_bad_example="skip" gets an "error" field.
        A single string (or Sentence) is one sentence: a list of one record comes back.
        progress(n): called as sentences are done (n of them; over the call, n adds up to len(inputs))."""
        inputs = one_or_many(inputs)
        sentences = self.to_sentences(inputs, names)
        data = ASTEDataset(sentences, self.tokenizer, max_span_size=self.max_span_size, train=False,
                           max_length=encoder_max_length(self.tokenizer, self.model.encoder.config),
                           on_bad_example=on_bad_example, report=ReadReport())
        results = [{"tokens": s.tokens, "triplets": []} for s in sentences]
        for k, x in enumerate(inputs):
            if isinstance(x, str):
                results[k] = {"sentence": x, **results[k]}
        for k, err in data.skipped:
            results[k]["error"] = str(err)
        if progress and data.skipped:
            progress(len(data.skipped))
        self.model.eval()
        for idx in LengthBucketSampler(data.lengths(), batch_size, shuffle=False):
            batch = {k: v.to(self.device) for k, v in collate([data[i] for i in idx], data.pad_id).items()}
            out = self.model.predict(batch, self.threshold, self.max_pairs, self.overlap)
            rows = batch["index"].tolist()
            for (row, a0, a1, o0, o1, senti), score in zip(out["triplets"].tolist(), out["triplet_scores"].tolist()):
                k = data.source_index[rows[row]]
                results[k]["triplets"].append(triplet_record(sentences[k].tokens, a0, a1, o0, o1, senti, score))
            if progress:
                progress(len(idx))
        for r in results:
            r["triplets"].sort(key=lambda t: -t["score"])
        return results


def one_or_many(inputs) -> list:
    """A lone string or Sentence is one sentence (not a sequence of characters)."""
    return [inputs] if isinstance(inputs, (str, Sentence)) else list(inputs)
