"""The D2E2S-style ASTE network, plain PyTorch on a transformers encoder. It never imports the data
package (aste): it takes tensors and returns logits, spans and triplets.

  d2e2s.py     the model: encoder -> BiLSTM -> syntactic + semantic GCN -> fusion -> span / pair heads
  encoder.py   loading the pretrained encoder and tokenizer (hub name, folder, or the offline MiniLM)
  lstm.py      a bidirectional LSTM over padded batches (what packing computes, without packing)
  gcn.py       the syntactic GCN (dependency tree) and the (enhanced) semantic GCN (attention graph)
  fusion/      the registry; one file per fusion: tin.py (tin, tin_no_lstm), cross_attention.py, lightweight.py
  heads.py     span and span-pair classifiers
  span_ops.py  max-pooling over word ranges (a sparse table: no batch x spans x tokens x hidden tensor)
  labels.py    class ids shared with the data package
"""
from .d2e2s import D2E2S, ModelConfig

__all__ = ["D2E2S", "ModelConfig"]
