"""TIN, D2E2S's fusion: per-branch residual MLP + LayerNorm, concatenation, 2-layer BiLSTM, MLP."""
from __future__ import annotations

import torch
from torch import nn

from ..lstm import MaskedBiLSTM


class TINFusion(nn.Module):
    def __init__(self, dim: int, **unused_options):
        super().__init__()

        def residual_block():
            return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.LayerNorm(dim))

        self.syn_block, self.sem_block = residual_block(), residual_block()
        self.lstm = MaskedBiLSTM(2 * dim, dim, num_layers=2)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.LayerNorm(dim))

    def forward(self, x, h_syn, h_sem, word_mask):
        syn = self.syn_block(x + h_syn)
        sem = self.sem_block(x + h_sem)
        fused = self.lstm(torch.cat([syn, sem], dim=-1), word_mask)
        return self.mlp(fused) * word_mask.unsqueeze(-1).to(x.dtype)
