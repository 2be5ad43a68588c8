"""The D2E2S-style ASTE model.

    subwords --encoder--> (B,S,D) --mean over each word's subwords--> words (B,W,D) --BiLSTM--> c (B,W,M)
    c --syntactic GCN (dependency tree)--> h_syn      c --semantic GCN (attention graph)--> h_sem
    fusion(words, h_syn, h_sem) (TIN | cross-attention | lightweight) --> self-attention + residual --> h
    (words is projected to M when D != M)
    spans: [max over h (sentence); max over span; width] -> none/aspect/opinion
    pairs: [max over h between spans; aspect; opinion; widths] -> sigmoid(POS, NEG, NEU)

M = 2 * hidden_dim (default hidden_dim = D / 2, so M = D).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import pool_subwords
from .fusion import OPTIONS, build_fusion, fusion_options
from .gcn import EnhancedSemanticGCN, SemanticGCN, SyntacticGCN
from .heads import PairClassifier, SpanClassifier
from .decoding import enumerate_pairs, overlap_losers, triplet_overlap_losers
from .labels import ENTITY_TYPES
from .lstm import MaskedBiLSTM
from .span_ops import RangeMax


@dataclass
class ModelConfig:
    """The model's settings, named as train.py's flags (config.json's 'model' section);
    fusion_options holds the options of the chosen fusion (models/fusion)."""
    encoder_dim: int
    hidden_dim: int
    lstm_layers: int = 2
    gcn_layers: int = 2
    attention_heads: int = 1
    fusion: str = "tin"
    fusion_options: dict = field(default_factory=dict)
    use_enhanced_semgcn: bool = False
    drop_out_rate: float = 0.5
    gcn_dropout: float = 0.1
    prop_drop: float = 0.1
    attention_dropout: float = 0.1
    size_embedding: int = 25
    loss_weighting: str = "fixed"
    span_boundary: bool = False
    pair_distance_embedding: int = 0

    @classmethod
    def from_flags(cls, flags: dict, encoder_dim: int, hidden_dim: int) -> "ModelConfig":
        """From train.py's parsed flags (vars(args)): every field of the same name, and the options
        of the chosen fusion."""
        names = {f.name for f in fields(cls)} - {"encoder_dim", "hidden_dim", "fusion_options"}
        options = fusion_options(flags["fusion"], {k: flags.get(k) for k in OPTIONS})
        return cls(encoder_dim=encoder_dim, hidden_dim=hidden_dim, fusion_options=options,
                   **{k: flags[k] for k in names})

    @property
    def width(self) -> int:
        return 2 * self.hidden_dim

    def to_dict(self) -> dict:
        return asdict(self)


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018): loss = sum_i exp(-s_i) * L_i + s_i with learned log-variances s_i."""

    def __init__(self, n: int = 2):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(n))

    def forward(self, losses: list[torch.Tensor]) -> torch.Tensor:
        return sum(torch.exp(-s) * loss + s for s, loss in zip(self.log_vars, losses))


class D2E2S(nn.Module):
    def __init__(self, encoder: nn.Module, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder  # as transformers' AutoModel returns it
        M = cfg.width
        self.lstm = MaskedBiLSTM(cfg.encoder_dim, cfg.hidden_dim, cfg.lstm_layers, cfg.drop_out_rate)
        self.lstm_dropout = nn.Dropout(cfg.drop_out_rate)
        self.word_proj = nn.Identity() if cfg.encoder_dim == M else nn.Linear(cfg.encoder_dim, M)
        self.syn_gcn = SyntacticGCN(M, cfg.gcn_layers, cfg.gcn_dropout)
        semgcn = EnhancedSemanticGCN if cfg.use_enhanced_semgcn else SemanticGCN
        self.sem_gcn = semgcn(M, cfg.attention_heads, cfg.gcn_layers, cfg.gcn_dropout)
        self.fusion = build_fusion(cfg.fusion, M, cfg.attention_dropout, **cfg.fusion_options)
        self.self_attention = nn.MultiheadAttention(M, cfg.attention_heads, dropout=cfg.attention_dropout,
                                                    batch_first=True)
        self.head_dropout = nn.Dropout(cfg.prop_drop)
        self.span_head = SpanClassifier(M, cfg.size_embedding, boundary=cfg.span_boundary)
        self.pair_head = PairClassifier(M, self.span_head.span_dim, cfg.size_embedding,
                                        distance_dim=cfg.pair_distance_embedding)
        self.loss_weights = UncertaintyWeighting(2) if cfg.loss_weighting == "uncertainty" else None

    def parameter_counts(self) -> dict[str, int]:
        parts = {"encoder": self.encoder, "lstm": self.lstm, "syntactic_gcn": self.syn_gcn, "semantic_gcn": self.sem_gcn,
                 "fusion": self.fusion, "self_attention": self.self_attention, "span_head": self.span_head,
                 "pair_head": self.pair_head, "total": self}
        return {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}

    # ---- features, stage by stage (scripts/benchmark_step.py times each stage) --------------
    def word_features(self, batch: dict) -> torch.Tensor:
        """Encoder output pooled to words: the mean of each word's subwords (B, W, D)."""
        h = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return pool_subwords(h, batch["subword_word"], batch["word_mask"].shape[1])

    def context(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """BiLSTM over the real words (B, W, M), the input of both GCNs."""
        return self.lstm_dropout(self.lstm(words, mask))

    def fuse(self, words: torch.Tensor, h_syn: torch.Tensor, h_sem: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Fusion of the two branches, then self-attention with a residual (B, W, M)."""
        # As in D2E2S, the fusion's residual stream is the encoder's own features: the GCNs read the
        # BiLSTM output, whose near-constant values at initialisation would otherwise starve the
        # span classifier of token identity for the first epochs.
        fused = self.fusion(self.word_proj(words), h_syn, h_sem, mask)
        att, _ = self.self_attention(fused, fused, fused, key_padding_mask=~mask, need_weights=False)
        return (fused + att) * mask.unsqueeze(-1).to(fused.dtype)

    def features(self, batch: dict) -> torch.Tensor:
        mask = batch["word_mask"]
        words = self.word_features(batch)
        context = self.context(words, mask)
        h_syn = self.syn_gcn(context, batch["dep_adj"])
        h_sem = self.sem_gcn(context, mask)
        return self.fuse(words, h_syn, h_sem, mask)

    def span_inputs(self, batch: dict, h: torch.Tensor):
        table = RangeMax(self.head_dropout(h))
        rows = torch.arange(h.shape[0], device=h.device)
        sentence_ctx = table.query(rows, torch.zeros_like(rows), batch["word_mask"].sum(1))
        return table, sentence_ctx

    # ---- training -------------------------------------------------------------------------
    def forward(self, batch: dict):
        """Logits for the sampled spans (N, 3) and sampled pairs (P, 3)."""
        h = self.features(batch)
        table, ctx = self.span_inputs(batch, h)
        spans = batch["spans"]
        span_logits, pooled, width = self.span_head(table, spans, ctx)
        pair_logits = self.pair_head(table, spans, pooled, width, batch["pairs"])
        return span_logits, pair_logits

    def loss(self, batch: dict, span_logits: torch.Tensor, pair_logits: torch.Tensor,
             span_norm: torch.Tensor | float | None = None, pair_norm: torch.Tensor | float | None = None):
        """Span cross-entropy (mean over spans) + pair BCE (mean over sentiments and pairs).
        span_norm / pair_norm replace the local counts in the means; distributed training passes the
        global counts / world size so that every rank's loss adds up to the single-process loss."""
        span_sum = F.cross_entropy(span_logits.float(), batch["span_labels"], reduction="sum")
        # BCE averaged over the 3 sentiments (as D2E2S/SpERT): summing them tripled the pair loss and let
        # it dominate the shared layers' gradients while span detection was the bottleneck
        pair_sum = F.binary_cross_entropy_with_logits(pair_logits.float(), batch["pair_labels"],
                                                      reduction="sum") / pair_logits.shape[-1]
        span_loss = span_sum / (span_norm if span_norm is not None else max(span_logits.shape[0], 1))
        pair_loss = pair_sum / (pair_norm if pair_norm is not None else max(pair_logits.shape[0], 1))
        total = span_loss + pair_loss if self.loss_weights is None else self.loss_weights([span_loss, pair_loss])
        return total, span_loss.detach(), pair_loss.detach()

    # ---- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: dict, threshold: float, max_pairs: int, overlap: str = "spans") -> dict:
        """Classify every candidate span, pair every predicted aspect with every predicted opinion of
        the same sentence (at most max_pairs per sentence, best span scores first), score the pairs.
        overlap (--overlap_filter): "spans" keeps the best-scoring of overlapping predicted spans of
        one type before pairing; "triplets" keeps, among triplets that share one span and whose other
        spans overlap, the best-scoring one; "none" keeps all. All tensor ops; returns tensors (on the
        model's device)."""
        h = self.features(batch)
        table, ctx = self.span_inputs(batch, h)
        spans = batch["spans"]
        span_logits, pooled, width = self.span_head(table, spans, ctx)
        score, label = span_logits.float().softmax(-1).max(-1)
        if overlap == "spans":
            entity = torch.nonzero(label != 0).squeeze(1)
            # spans compete only within one (sentence, type) group: an aspect never removes an opinion
            lose = overlap_losers(spans[entity, 0] * len(ENTITY_TYPES) + label[entity], spans[entity, 1],
                                  spans[entity, 2], score[entity])
            label = label.index_put((entity[lose],), label.new_zeros(()))
        pairs, capped_rows = enumerate_pairs(spans[:, 0], label, score, h.shape[0], max_pairs)
        pair_probs = torch.sigmoid(self.pair_head(table, spans, pooled, width, pairs).float())
        senti_score, senti = (pair_probs.max(-1) if pairs.shape[0] else (pair_probs.new_zeros(0), pairs.new_zeros(0)))
        keep = senti_score > threshold
        pairs, senti, senti_score = pairs[keep], senti[keep], senti_score[keep]
        if overlap == "triplets":
            pairs, senti, senti_score = (x[~triplet_overlap_losers(spans, pairs, senti_score)]
                                         for x in (pairs, senti, senti_score))
        is_entity = label != 0
        return {"spans": spans[is_entity], "span_types": label[is_entity], "span_scores": score[is_entity],
                "triplets": torch.cat([spans[pairs[:, 0]], spans[pairs[:, 1], 1:], senti.unsqueeze(1)], dim=1),
                "triplet_scores": senti_score, "capped_sentences": capped_rows}
