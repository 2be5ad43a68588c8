"""Reading, sampling, evaluating and training for span-based ASTE (SpERT/D2E2S lineage).

Data path: input_reader (files -> Sentence) -> encoding (words -> subwords) ->
sampling (Sentence -> tensors, batches) -> models (tensors -> logits) ->
decoding/evaluator (logits -> triplets -> P/R/F1) -> trainer (the loop).
"""
