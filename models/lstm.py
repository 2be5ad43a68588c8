"""A bidirectional LSTM over padded batches whose padding never reaches a real position.

Each direction is its own single-layer nn.LSTM run on a dense (B, W, ·) tensor:
  - forward direction: the padded batch as is (padding comes after the real words, so a real
    position has only seen real words);
  - backward direction: every sentence reversed within its own length (word i of a sentence of
    length n goes to n-1-i; padding stays at the end), run forward, then reversed back.
This computes exactly what a packed sequence computes, but without packing: on CPU a packed LSTM
runs its backward pass one time step at a time (one weight-gradient matmul per step), which is
slower and takes more memory than the dense kernel, the more so the longer the batch.
tests/test_modules.py checks outputs and gradients against a packed nn.LSTM.
"""
from __future__ import annotations

import torch
from torch import nn


class MaskedBiLSTM(nn.Module):
    """Drop-in for nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=True,
    dropout=dropout) on padded batches: forward(x (B, W, I), word_mask (B, W)) -> (B, W, 2 * hidden)
    with zeros at padding. Dropout between layers, as in nn.LSTM."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(n, hidden_size, batch_first=True) for n in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(n, hidden_size, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        keep = word_mask.unsqueeze(-1).to(x.dtype)
        # the index that reverses each row's real positions and leaves padding in place
        pos = torch.arange(word_mask.shape[1], device=word_mask.device).expand_as(word_mask)
        lengths = word_mask.sum(1, keepdim=True)
        rev = torch.where(pos < lengths, lengths - 1 - pos, pos).unsqueeze(-1)
        for i, (fw, bw) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i:
                x = self.dropout(x)
            out_fw = fw(x)[0]
            out_bw = bw(x.gather(1, rev.expand(-1, -1, x.shape[-1])))[0]
            out_bw = out_bw.gather(1, rev.expand(-1, -1, out_bw.shape[-1]))
            # padding positions hold junk between layers; it sits after every real word in both
            # directions, so it never reaches one, and is zeroed once at the end
            x = torch.cat([out_fw, out_bw], dim=-1)
        return x * keep
