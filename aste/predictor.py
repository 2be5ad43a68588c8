"""Triplets for new sentences from a saved run folder, in Python:

    from aste import Predictor
    p = Predictor.from_run("Results/14res/<run>")
    p.predict(["The soup was cold but the staff were lovely ."])
    # -> [{"sentence": ..., "tokens": [...], "triplets": [{"aspect": "soup", "opinion": "cold",
    #      "sentiment": "NEG", "aspect_span": [1, 2], "opinion_span": [3, 4], "score": 0.98}, ...]}]

A sentence is a string (split into words by spaCy, as the ASTE data is: "couldn't" -> could n't),
a list of words, or an `aste.input_reader.Sentence`. Every sentence without a dependency parse is
parsed by spaCy on its own words; none is left with an empty graph. Spans are word indices, end
exclusive.
"""
from __future__ import annotations

import torch

from .encoding import encoder_max_length
from .environment import pick_device
from .evaluator import triplet_record
from .input_reader import ReadReport, Sentence
from .parsing import add_parses, load_spacy
from .runs import load_run, saved_flag
from .sampling import ASTEDataset, LengthBucketSampler, collate


class Predictor:
    def __init__(self, model, tokenizer, config: dict, device: torch.device, spacy_model: str = "en_core_web_sm"):
        self.model, self.tokenizer, self.config, self.device = model, tokenizer, config, device
        self.spacy_model = spacy_model
        saved = config["args"]
        self.max_span_size, self.threshold, self.max_pairs = (saved["max_span_size"], saved["sen_filter_threshold"],
                                                              saved["max_pairs"])
        self.overlap = saved_flag(saved, "overlap_filter", "spans")

    @classmethod
    def from_run(cls, run_dir: str, device: str = "auto", spacy_model: str = "en_core_web_sm") -> "Predictor":
        device = pick_device(device) if isinstance(device, str) else device
        model, tokenizer, config = load_run(run_dir, device)
        return cls(model, tokenizer, config, device, spacy_model)

    def to_sentences(self, inputs, names: list[str] | None = None) -> list[Sentence]:
        """Strings and word lists -> Sentence objects with words and dependency heads (spaCy).
        names: what messages call each input (default "sentence #k")."""
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
                names: list[str] | None = None) -> list[dict]:
        """One record per input: {"sentence" (the string, if one was given), "tokens", "triplets"}
        with triplets best score first. A sentence the model cannot take (empty, longer than the
        encoder's limit) raises BadExample, or with on_bad_example="skip" gets an "error" field."""
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
        self.model.eval()
        for idx in LengthBucketSampler(data.lengths(), batch_size, shuffle=False):
            batch = {k: v.to(self.device) for k, v in collate([data[i] for i in idx], data.pad_id).items()}
            out = self.model.predict(batch, self.threshold, self.max_pairs, self.overlap)
            rows = batch["index"].tolist()
            for (row, a0, a1, o0, o1, senti), score in zip(out["triplets"].tolist(), out["triplet_scores"].tolist()):
                k = data.source_index[rows[row]]
                results[k]["triplets"].append(triplet_record(sentences[k].tokens, a0, a1, o0, o1, senti, score))
        for r in results:
            r["triplets"].sort(key=lambda t: -t["score"])
        return results
