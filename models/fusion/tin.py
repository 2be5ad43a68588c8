"""TIN, D2E2S's fusion: per-branch residual MLP + LayerNorm, concatenation, 2-layer BiLSTM, MLP.

--fusion tin_no_lstm is the same module without its BiLSTM (the MLP reads the concatenation): an
ablation that separates what TIN's own recurrent layer adds from the rest of the fusion, for
comparisons with the cross-attention fusions, which have no sequence layer of their own."""
from __future__ import annotations

import torch
from torch import nn

from ..lstm import MaskedBiLSTM
from . import register_fusion


@register_fusion("tin")
class TINFusion(nn.Module):
    defaults: dict = {}  # no options

    def __init__(self, dim: int, dropout: float = 0.1, lstm: bool = True):
        super().__init__()

        def mlp(width_in: int):  # a branch's MLP reads x + h_branch: the skip connection is that sum
            return nn.Sequential(nn.Linear(width_in, dim), nn.ReLU(), nn.Linear(dim, dim), nn.LayerNorm(dim))

        self.syn_block, self.sem_block = mlp(dim), mlp(dim)
        self.lstm = MaskedBiLSTM(2 * dim, dim, num_layers=2) if lstm else None
        self.mlp = mlp(2 * dim)

    def forward(self, x, h_syn, h_sem, word_mask):
        syn = self.syn_block(x + h_syn)
        sem = self.sem_block(x + h_sem)
        fused = torch.cat([syn, sem], dim=-1)
        if self.lstm is not None:
            fused = self.lstm(fused, word_mask)
        return self.mlp(fused) * word_mask.unsqueeze(-1).to(x.dtype)


@register_fusion("tin_no_lstm")
class TINWithoutLSTMFusion(TINFusion):
    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__(dim, dropout, lstm=False)
