"""The training loop, evaluation and run-folder bookkeeping.

A run folder ``Results/<dataset>/<run_name>/`` holds:
  config.json             every flag, encoder name and size, module parameter counts, data report,
                          library versions, git commit; after the run also the summary
  metrics.jsonl           one line per epoch: losses, every P/R/F1 on dev and test, seconds
  best.safetensors        weights of the best-dev epoch
  encoder/                encoder config + tokenizer files (a run folder predicts offline)
  test_predictions.jsonl  test sentences with gold and predicted triplets at the best-dev epoch
  state.pt                resume state (model, optimizer, scheduler, scaler, RNG, history), every epoch
Model selection uses dev triplet F1 only; test is reported at that epoch.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import random
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.d2e2s import D2E2S, ModelConfig

from .evaluator import Evaluator
from .input_reader import ReadReport, read_sentences
from .parsing import add_parses
from .sampling import ASTEDataset, LengthBucketSampler, ShuffledBatchSampler, collate

log = logging.getLogger("aste")
SPLITS = ("train", "dev", "test")


# ---- environment ----------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is visible (use --device auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)


@dataclass
class Distributed:
    """torchrun's process group: rank 0 evaluates, logs and saves; --batch_size is the global batch."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup_distributed(device_name: str) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(torch.distributed.get_rank(), world, local)


class ShardedBatches:
    """Each rank takes every world-th sentence of each global batch. A global batch with fewer
    sentences than ranks is given whole to every rank (losses are normalised by global counts, so
    the averaged gradient is unchanged); no sentence is dropped."""

    def __init__(self, batches, dist: Distributed):
        self.batches, self.dist = batches, dist

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self):
        for batch in self.batches:
            yield batch[self.dist.rank::self.dist.world] if len(batch) >= self.dist.world else batch

    def __len__(self) -> int:
        return len(self.batches)


def amp_dtype(args, device: torch.device):
    if args.amp == "off":
        return None
    if device.type != "cuda":
        log.warning("--amp %s ignored on CPU (fp32)", args.amp)
        return None
    if args.amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise SystemExit(f"error: --amp bf16 is not supported on {torch.cuda.get_device_name()} "
                         "(e.g. P100 has no bf16): use --amp fp16")
    return torch.float16 if args.amp == "fp16" else torch.bfloat16


def can_compile(device: torch.device) -> tuple[bool, str]:
    if device.type == "cuda" and torch.cuda.get_device_capability() < (7, 0):
        return False, f"{torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}) is too old for Triton"
    try:
        import triton  # noqa: F401
    except ImportError:
        if device.type == "cuda":
            return False, "Triton is not installed"
    return True, ""


def rss_mb() -> float:
    """Current resident memory of this process, MB (Linux /proc/self/status)."""
    with open("/proc/self/status", encoding="utf-8") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB (Linux ru_maxrss, KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@functools.lru_cache(maxsize=1)
def _glibc():
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl)
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_free_heap() -> bool:
    """Hand the pages glibc's heap holds free back to the OS (malloc_trim). Returns whether memory
    was released; without glibc it does nothing."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


LARGE_BATCH_FRACTION = 0.6  # measured against 0.8 and against trimming before record batches only


def padded_batch_sizes(loader: DataLoader) -> list[int]:
    """Padded subword count (sentences x longest sentence) of each batch the loader will yield this
    epoch, in order. Reads the loader's batch sampler a second time, which is only right for samplers
    that are a pure function of (seed, epoch) and draw from no global generator: this package's
    LengthBucketSampler, ShuffledBatchSampler and ShardedBatches (make_loader uses nothing else)."""
    lengths = loader.dataset.lengths()
    return [len(idx) * max(lengths[i] for i in idx) for idx in loader.batch_sampler]


def heap_trim_steps(batch_sizes: list[int], fraction: float = LARGE_BATCH_FRACTION) -> set[int]:
    """The (1-based) training steps before which to call release_free_heap on CPU: every batch of at
    least `fraction` of the epoch's largest, and the step right after each.

    Why: glibc keeps freed activation buffers as free heap pages. Batches of different shapes reuse
    them only in part (fragmentation), so soon after a trim the resident set climbs back well above
    what is in use, and a large batch then adds its whole activation footprint on top. Trimming just before a large batch lets it start from what is in use; trimming
    just after hands back the free space it leaves, which the next, smaller batches would use only in part.
    With batches grouped by length (--bucket_by_length, the default) few batches are near the largest:
    a few trims per epoch, at no measurable cost (scripts/benchmark_heap.py). Without grouping many more
    batches are, and many more steps trim (not benchmarked). Trimming before every step
    would fault the released pages back in each time (slower epochs)."""
    if not batch_sizes:
        return set()
    cut = fraction * max(batch_sizes)
    large = [k for k, size in enumerate(batch_sizes, start=1) if size >= cut]
    return set(large) | {k + 1 for k in large if k < len(batch_sizes)}


def children_peak_rss_mb() -> float:
    """Largest peak RSS among finished child processes (DataLoader workers, and any helper a library
    forks). A forked child's figure includes the pages it shares with this process, so it is an upper
    bound of what it added; with --num_workers 0 there are no workers."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def git_commit(root: str | None = None) -> str | None:
    """HEAD's commit, read from .git directly: a `git` subprocess would be forked from this (large)
    process, and the fork's resident set would be counted in the children's peak memory. In a git
    worktree, .git is a file naming the worktree's own folder; branch refs live in the common one."""
    git = os.path.join(root or os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".git")
    try:
        if os.path.isfile(git):  # worktree: "gitdir: <path>"
            with open(git, encoding="utf-8") as f:
                git = os.path.join(os.path.dirname(git), f.read().strip().removeprefix("gitdir:").strip())
        common = git
        if os.path.exists(os.path.join(git, "commondir")):
            with open(os.path.join(git, "commondir"), encoding="utf-8") as f:
                common = os.path.join(git, f.read().strip())
        with open(os.path.join(git, "HEAD"), encoding="utf-8") as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        for folder in (git, common):
            if os.path.exists(os.path.join(folder, ref)):
                with open(os.path.join(folder, ref), encoding="utf-8") as f:
                    return f.read().strip()
        with open(os.path.join(common, "packed-refs"), encoding="utf-8") as f:
            for line in f:
                if line.strip().endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        pass
    return None


def library_versions() -> dict:
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__}


# ---- data -----------------------------------------------------------------------------------
def split_paths(args) -> dict[str, str]:
    fmt = args.data_format
    data_dir = args.data_dir or os.path.join("data", "aste-v2" if fmt == "aste" else "d2e2s")
    name = "{}_triplets.txt" if fmt == "aste" else "{}_dep_triple_polarity_result.json"
    paths = {s: os.path.join(data_dir, args.dataset, name.format(s)) for s in SPLITS}
    for s in SPLITS:
        if getattr(args, f"{s}_file", None):
            paths[s] = getattr(args, f"{s}_file")
    return paths


def load_split(path: str, args, report: ReadReport):
    sentences = read_sentences(path, args.data_format, args.on_bad_example, report)
    if any(s.heads is None for s in sentences):
        add_parses(sentences, args.spacy_model, cache_dir=os.path.join("data", ".parse_cache"))
    return sentences


def make_dataset(sentences, tokenizer, args, train: bool, report: ReadReport, max_length: int) -> ASTEDataset:
    return ASTEDataset(sentences, tokenizer, max_span_size=args.max_span_size, train=train,
                       neg_entity_count=args.neg_entity_count, neg_triple_count=args.neg_triple_count,
                       seed=args.seed, max_length=max_length, on_bad_example=args.on_bad_example, report=report)


def make_loader(dataset: ASTEDataset, args, train: bool, device: torch.device,
                dist: Distributed | None = None) -> DataLoader:
    if train:
        cls = LengthBucketSampler if args.bucket_by_length else ShuffledBatchSampler
        sampler = cls(dataset.lengths(), args.batch_size, shuffle=True, seed=args.seed)
        if dist is not None and dist.world > 1:
            sampler = ShardedBatches(sampler, dist)
    else:  # evaluation: sorted by length, every sentence exactly once, no batch dropped
        sampler = LengthBucketSampler(dataset.lengths(), args.batch_size, shuffle=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=args.num_workers,
                      collate_fn=functools.partial(collate, pad_id=dataset.pad_id),  # picklable for workers
                      pin_memory=device.type == "cuda", persistent_workers=args.num_workers > 0)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ---- model ----------------------------------------------------------------------------------
def model_config(args, encoder_dim: int) -> ModelConfig:
    return ModelConfig(
        encoder_dim=encoder_dim, hidden_dim=args.hidden_dim or encoder_dim // 2, lstm_layers=args.lstm_layers,
        gcn_layers=args.gcn_layers, attention_heads=args.attention_heads, fusion=args.fusion,
        cross_attention_heads=args.cross_attention_heads,
        share_cross_attention_weights=args.share_cross_attention_weights,
        cross_attention_window=args.cross_attention_window, enhanced_semgcn=args.use_enhanced_semgcn,
        lstm_dropout=args.drop_out_rate, gcn_dropout=args.gcn_dropout, prop_drop=args.prop_drop,
        attention_dropout=args.attention_dropout,
        size_embedding=args.size_embedding, loss_weighting=args.loss_weighting)


def parameter_counts(model: D2E2S) -> dict:
    def count(m):
        return sum(p.numel() for p in m.parameters())
    return {"encoder": count(model.encoder), "lstm": count(model.lstm), "syntactic_gcn": count(model.syn_gcn),
            "semantic_gcn": count(model.sem_gcn), "fusion": count(model.fusion),
            "self_attention": count(model.self_attention), "span_head": count(model.span_head),
            "pair_head": count(model.pair_head), "total": count(model)}


def default_run_name(args) -> str:
    parts = [args.fusion]
    if args.fusion != "tin":
        parts.append(f"h{args.cross_attention_heads or (8 if args.fusion == 'cross_attention' else 4)}")
    if args.use_enhanced_semgcn:
        parts.append("esem")
    if args.share_cross_attention_weights:
        parts.append("shared")
    if args.cross_attention_window:
        parts.append(f"win{args.cross_attention_window}")
    if args.loss_weighting != "fixed":
        parts.append(args.loss_weighting)
    enc = os.path.basename(os.path.normpath(args.pretrained_deberta_name)).lower()
    return "-".join([enc] + parts + [f"seed{args.seed}"])


# ---- loops ----------------------------------------------------------------------------------
@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_epoch: int = 0
    best_dev_f1: float = -1.0
    bad_steps_total: int = 0
    history: list = field(default_factory=list)


@torch.no_grad()
def evaluate(model: D2E2S, loader: DataLoader, args, device, autocast_dtype=None, desc="eval") -> Evaluator:
    model.eval()
    evaluator = Evaluator(loader.dataset)
    for batch in tqdm(loader, desc=desc, leave=False, disable=not sys.stderr.isatty()):
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model.predict(batch, args.sen_filter_threshold, args.max_pairs)
        evaluator.add(batch["index"], out)
    if evaluator.capped_sentences:
        log.warning("%s: --max_pairs %d capped the candidate pairs of %d sentence(s)", desc, args.max_pairs,
                    evaluator.capped_sentences)
    return evaluator


def oom_message(batch: dict) -> str:
    B, S = batch["input_ids"].shape
    return (f"CUDA out of memory on a batch of {B} sentences x {S} subwords ({batch['spans'].shape[0]} spans). "
            "Try a smaller --batch_size (with --grad_accum_steps to keep the effective batch), --amp fp16, "
            "fewer --cross_attention_heads, --grad_checkpointing, or a smaller --neg_entity_count.")


def global_norms(batch: dict, dist: Distributed, device) -> tuple:
    """Span and pair counts of the whole global batch / world size (None in a single process)."""
    if dist.world == 1:
        return None, None
    counts = torch.tensor([batch["spans"].shape[0], batch["pairs"].shape[0]], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(counts)
    counts = counts.clamp(min=1.0) / dist.world
    return counts[0].float(), counts[1].float()


def any_rank(flag: bool, dist: Distributed, device) -> bool:
    if dist.world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def train_epoch(model, loader, optimizer, scheduler, scaler, args, device, autocast_dtype, state: TrainState,
                epoch: int, writer=None, dist: Distributed | None = None) -> dict:
    dist = dist or Distributed()
    release_free_heap()  # the evaluation just run left its buffers in the heap
    trim_before = set()
    if device.type == "cpu" and args.cpu_heap_trim == "large_batches" and _glibc() is not None:
        trim_before = heap_trim_steps(padded_batch_sizes(loader))
    model.train()
    totals = {"loss": 0.0, "span_loss": 0.0, "pair_loss": 0.0, "steps": 0, "skipped_steps": 0}
    bad_in_row = 0
    sentences = 0
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not (sys.stderr.isatty() and dist.is_main))
    optimizer.zero_grad(set_to_none=True)
    for step, batch in enumerate(bar, start=1):
        if step in trim_before:
            release_free_heap()
        batch = to_device(batch, device)
        try:
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                span_logits, pair_logits = model(batch)
            raw = getattr(model, "module", getattr(model, "_orig_mod", model))  # under DDP / torch.compile
            loss, span_loss, pair_loss = raw.loss(batch, span_logits, pair_logits, *global_norms(batch, dist, device))
        except torch.OutOfMemoryError:
            raise SystemExit("error: " + oom_message(batch)) from None
        if any_rank(not torch.isfinite(loss).item(), dist, device):  # every rank skips together
            bad_in_row += 1
            totals["skipped_steps"] += 1
            state.bad_steps_total += 1
            log.warning("non-finite loss at epoch %d step %d: step skipped (%d in a row)", epoch, step, bad_in_row)
            optimizer.zero_grad(set_to_none=True)
            if bad_in_row >= args.max_bad_steps:
                raise NonFiniteLoss(f"{bad_in_row} non-finite losses in a row (--max_bad_steps {args.max_bad_steps}) "
                                    f"at epoch {epoch}; the last good checkpoint is kept")
            continue
        bad_in_row = 0
        scaler.scale(loss / args.grad_accum_steps).backward()
        if step % args.grad_accum_steps == 0 or step == len(loader):
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        sentences += batch["input_ids"].shape[0]
        logged = torch.stack([loss.detach().float(), span_loss.float(), pair_loss.float()])
        if dist.world > 1:  # rank r holds world * (its share of the global loss): average them
            torch.distributed.all_reduce(logged)
            logged /= dist.world
        loss_v, span_v, pair_v = logged.tolist()
        totals["loss"] += loss_v
        totals["span_loss"] += span_v
        totals["pair_loss"] += pair_v
        totals["steps"] += 1
        rate = sentences / (time.perf_counter() - t0)
        bar.set_postfix(loss=f"{loss_v:.4f}", sent_s=f"{rate:.1f}")
        if args.log_every and step % args.log_every == 0:
            log.info("epoch %d step %d/%d loss %.4f (%.1f sent/s)", epoch, step, len(loader), loss_v, rate)
        if writer is not None and dist.is_main:
            gstep = (epoch - 1) * len(loader) + step
            writer.add_scalar("train/loss", loss_v, gstep)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], gstep)
    n = max(totals["steps"], 1)
    return {"loss": totals["loss"] / n, "span_loss": totals["span_loss"] / n, "pair_loss": totals["pair_loss"] / n,
            "skipped_steps": totals["skipped_steps"], "train_seconds": time.perf_counter() - t0,
            "sentences_per_second": sentences / (time.perf_counter() - t0)}


class NonFiniteLoss(RuntimeError):
    pass


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_state() -> dict:
    # data sampling is a pure function of (seed, epoch, index); dropout draws from torch's RNG
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


