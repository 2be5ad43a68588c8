"""The training loop: optimizer and schedule, one epoch of steps, evaluation, and the epoch loop that
keeps the best-dev epoch and writes the run folder as it goes. Model selection uses dev triplet F1
only; test is reported at that epoch."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from models import D2E2S
from models.errors import UserError

from .data import set_epoch
from .environment import Distributed, peak_rss_mb, rng_state, set_rng_state
from .evaluator import THRESHOLDS, Evaluator, format_metrics
from .runs import RunFolder

log = logging.getLogger("aste")


class NonFiniteLoss(UserError):
    pass


class OutOfMemory(UserError):
    """Out of memory on one batch; the message names its shape and what to change."""


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, and the CPU allocator's failures that Python sees (a kernel kill cannot
    be caught)."""
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and ("DefaultCPUAllocator" in str(err) or "can't allocate memory" in str(err)))


@contextlib.contextmanager
def out_of_memory_message(batch: dict, where: str):
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        B, S = batch["input_ids"].shape
        raise OutOfMemory(
            f"out of memory in {where} on a batch of {B} sentences x {S} subwords ({batch['spans'].shape[0]} spans). "
            "Try a smaller --batch_size (with --grad_accum_steps to keep the effective batch), --amp fp16, "
            "fewer --cross_attention_heads, --grad_checkpointing, or a smaller --neg_entity_count.") from None


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def build_optimizer(model: D2E2S, args, updates_per_epoch: int):
    """AdamW: the encoder at --lr, the fusion module at --fusion_lr (default --task_lr), the other
    layers trained from scratch at --task_lr, no weight decay on biases and norms; linear warm-up
    over --lr_warmup of all updates, then linear decay to 0."""
    if args.epochs is None:
        raise ValueError("args.epochs is None: train.py sets it from --sentence_budget (Parameter.epochs_for)")
    module_lr = {"encoder": args.lr, "fusion": args.task_lr if args.fusion_lr is None else args.fusion_lr}
    groups = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            lr = module_lr.get(name.split(".")[0], args.task_lr)
            decay = 0.0 if p.ndim < 2 else args.weight_decay  # no decay on biases, norms and loss weights
            groups.setdefault((lr, decay), []).append(p)
    param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    try:  # the fused kernel is faster than the per-tensor loop on GPU and on CPU
        optimizer = torch.optim.AdamW(param_groups, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(param_groups, foreach=True)
    total = updates_per_epoch * args.epochs
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(args.lr_warmup * total), total)


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    best_epoch: int = 0
    best_dev_f1: float = -1.0
    bad_steps_total: int = 0
    history: list = field(default_factory=list)


@torch.no_grad()
def evaluate(model: D2E2S, loader: DataLoader, threshold: float, max_pairs: int, device: torch.device,
             autocast_dtype=None, desc: str = "eval", overlap: str = "spans") -> Evaluator:
    model.eval()
    evaluator = Evaluator(loader.dataset, threshold)
    lowest = min(threshold, *THRESHOLDS)  # decoded once at the lowest, scored at each (Evaluator.metrics_at)
    for batch in tqdm(loader, desc=desc, leave=False, disable=not sys.stderr.isatty()):
        batch = to_device(batch, device)
        with out_of_memory_message(batch, f"{desc} evaluation"), \
                torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            evaluator.add(batch["index"], model.predict(batch, lowest, max_pairs, overlap))
    if evaluator.capped_sentences:
        log.warning("%s: --max_pairs %d capped the candidate pairs of %d sentence(s)", desc, max_pairs,
                    evaluator.capped_sentences)
    return evaluator


class Trainer:
    """Owns what changes during training: model, optimizer, schedule, grad scaler, TrainState.
    `train_model` is what the steps call (the model itself, or its DDP / torch.compile wrapper)."""

    def __init__(self, model: D2E2S, train_model: torch.nn.Module, args, device: torch.device,
                 autocast_dtype, updates_per_epoch: int, dist: Distributed | None = None, writer=None):
        self.model, self.train_model, self.args, self.device = model, train_model, args, device
        self.autocast_dtype, self.dist, self.writer = autocast_dtype, dist or Distributed(), writer
        self.optimizer, self.scheduler = build_optimizer(model, args, updates_per_epoch)
        self.scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
        self.state = TrainState()

    # ---- resume state -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "train_state": vars(self.state), "rng": rng_state()}

    def load_state_dict(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        self.state = TrainState(**saved["train_state"])
        set_rng_state(saved["rng"])

    # ---- one epoch ------------------------------------------------------------------------------
    def _global_norms(self, batch: dict):
        """Span and pair counts of the whole global batch / world size (None in a single process)."""
        if self.dist.world == 1:
            return None, None
        counts = torch.tensor([batch["spans"].shape[0], batch["pairs"].shape[0]], dtype=torch.float64,
                              device=self.device)
        torch.distributed.all_reduce(counts)
        counts = counts.clamp(min=1.0) / self.dist.world
        return counts[0].float(), counts[1].float()

    def _any_rank(self, flag: bool) -> bool:
        if self.dist.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def update(self) -> None:
        """One optimizer update from the accumulated gradients (clipped, scaled under fp16)."""
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def skip_bad_step(self, epoch: int, step: int, bad_in_row: int) -> None:
        self.state.bad_steps_total += 1
        log.warning("non-finite loss at epoch %d step %d: step skipped (%d in a row)", epoch, step, bad_in_row)
        if bad_in_row >= self.args.max_bad_steps:
            raise NonFiniteLoss(f"{bad_in_row} non-finite losses in a row (--max_bad_steps {self.args.max_bad_steps}) "
                                f"at epoch {epoch}; the last good checkpoint is kept")

    def train_epoch(self, loader: DataLoader, epoch: int) -> dict:
        args, device, dist = self.args, self.device, self.dist
        self.train_model.train()
        totals = torch.zeros(3, dtype=torch.float64)  # loss, span loss, pair loss
        steps = skipped = bad_in_row = sentences = 0
        window_has_grads = False  # any good micro-batch since the last update (--grad_accum_steps)
        t0 = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not (sys.stderr.isatty() and dist.is_main))
        self.optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(bar, start=1):
            batch = to_device(batch, device)
            with out_of_memory_message(batch, "training"):
                with torch.autocast(device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                    span_logits, pair_logits = self.train_model(batch)
                loss, span_loss, pair_loss = self.model.loss(batch, span_logits, pair_logits, *self._global_norms(batch))
                finite = not self._any_rank(not torch.isfinite(loss).item())  # every rank skips together
                if finite:
                    bad_in_row = 0
                    self.scaler.scale(loss / args.grad_accum_steps).backward()
                    window_has_grads = True
                else:  # never backpropagated, so the window's good gradients are untouched and still used
                    bad_in_row, skipped = bad_in_row + 1, skipped + 1
                    self.skip_bad_step(epoch, step, bad_in_row)
                if (step % args.grad_accum_steps == 0 or step == len(loader)) and window_has_grads:
                    self.update()
                    window_has_grads = False
            if not finite:
                continue  # nothing to log
            sentences += batch["input_ids"].shape[0]
            logged = torch.stack([loss.detach().float(), span_loss.float(), pair_loss.float()])
            if dist.world > 1:  # rank r holds world * (its share of the global loss): average them
                torch.distributed.all_reduce(logged)
                logged /= dist.world
            logged = logged.double().cpu()
            totals += logged
            steps += 1
            rate = sentences / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{logged[0]:.4f}", sent_s=f"{rate:.1f}")
            if args.log_every and step % args.log_every == 0:
                log.info("epoch %d step %d/%d loss %.4f (%.1f sent/s)", epoch, step, len(loader), logged[0], rate)
            if self.writer is not None and dist.is_main:
                self.writer.add_scalars("train", {"loss": logged[0].item(), "lr": self.scheduler.get_last_lr()[0]},
                                        (epoch - 1) * len(loader) + step)
        seconds = time.perf_counter() - t0
        mean = (totals / max(steps, 1)).tolist()
        return {"loss": mean[0], "span_loss": mean[1], "pair_loss": mean[2], "skipped_steps": skipped,
                "train_seconds": seconds, "sentences_per_second": sentences / seconds}

    # ---- the epoch loop -------------------------------------------------------------------------
    def evaluate(self, loader: DataLoader, desc: str) -> tuple[Evaluator, float]:
        t0 = time.perf_counter()
        ev = evaluate(self.model, loader, self.args.sen_filter_threshold, self.args.max_pairs, self.device,
                      self.autocast_dtype, desc, self.args.overlap_filter)
        return ev, time.perf_counter() - t0

    def fit(self, loaders: dict[str, DataLoader], run: RunFolder, deadline: float | None = None) -> str:
        """Epochs state.epoch + 1 .. --epochs: train, evaluate dev and test (rank 0), keep the best-dev
        epoch's weights and test predictions, rewrite metrics.jsonl, save the resume state. Stops early
        when dev triplet F1 has not improved for --patience epochs, or (with the resume state saved)
        before an epoch that would end after `deadline` (time.monotonic()), judged from this process's
        slowest epoch so far. Returns "finished", "patience" or "time_budget"."""
        args, state = self.args, self.state
        epoch_seconds, saved_epoch = [], state.epoch
        while state.epoch < args.epochs:
            main = self.dist.is_main
            if self._any_rank(main and bool(args.patience) and state.epoch - state.best_epoch >= args.patience):
                return "patience"
            late = deadline is not None and epoch_seconds and time.monotonic() + max(epoch_seconds) > deadline
            if self._any_rank(main and bool(late)):  # the first epoch of a process always runs
                if main and saved_epoch != state.epoch:
                    run.save_state(self.state_dict())
                return "time_budget"
            t0, epoch = time.monotonic(), state.epoch + 1
            set_epoch(loaders["train"], epoch)
            train_stats = self.train_epoch(loaders["train"], epoch)
            state.epoch = epoch
            if main:  # rank 0 evaluates every dev/test sentence once, logs and saves
                saved_epoch = self.finish_epoch(loaders, run, train_stats) or saved_epoch
            self.dist.barrier()
            epoch_seconds.append(time.monotonic() - t0)
        return "finished"

    def finish_epoch(self, loaders: dict[str, DataLoader], run: RunFolder, train_stats: dict) -> int | None:
        """Evaluate dev and test, write the run folder; the epoch number if the resume state was saved."""
        args, state, epoch = self.args, self.state, self.state.epoch
        dev_eval, dev_seconds = self.evaluate(loaders["dev"], "dev")
        test_eval, test_seconds = self.evaluate(loaders["test"], "test")
        dev, test = dev_eval.metrics(), test_eval.metrics()
        record = {"epoch": epoch, **train_stats, "lr": self.scheduler.get_last_lr()[0], "dev": dev, "test": test,
                  "dev_seconds": dev_seconds, "test_seconds": test_seconds, "peak_rss_mb": peak_rss_mb(),
                  "decodings": {f"sen_filter_threshold={t:g}": {"dev": dev_eval.metrics_at(t),
                                                                "test": test_eval.metrics_at(t)}
                                for t in THRESHOLDS if t != args.sen_filter_threshold}}
        if self.device.type == "cuda":
            record["peak_cuda_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.model.loss_weights is not None:
            record["loss_log_vars"] = self.model.loss_weights.log_vars.detach().cpu().tolist()
        improved = dev["triplet"]["f1"] > state.best_dev_f1
        if improved:
            state.best_dev_f1, state.best_epoch = dev["triplet"]["f1"], epoch
            if not args.no_checkpoint:
                run.save_best(self.model)
            run.write_best_epoch(test_eval.prediction_records(), dev | {"epoch": epoch})
        record["best_epoch"] = state.best_epoch
        state.history.append(record)
        # a new best epoch always gets a state too: a resume must never repeat an epoch whose weights
        # are already in best.safetensors
        saved = epoch < args.epochs and (improved or epoch % args.save_state_every == 0)
        if saved:
            run.save_state(self.state_dict())
        run.write_history(state.history)  # after the state: a kill in between is repaired on resume
        self.log_epoch(record, improved)
        return epoch if saved else None

    def log_epoch(self, record: dict, improved: bool) -> None:
        gpu = f" | peak GPU {record['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in record else ""
        log.info("epoch %d/%d | loss %.4f | train %.1fs (%.1f sent/s) dev %.1fs test %.1fs | peak RSS %.0f MB%s",
                 record["epoch"], self.args.epochs, record["loss"], record["train_seconds"],
                 record["sentences_per_second"], record["dev_seconds"], record["test_seconds"], record["peak_rss_mb"],
                 gpu)
        log.info("  dev  %s", format_metrics(record["dev"]))
        log.info("  test %s%s", format_metrics(record["test"]), "   <- best dev so far" if improved else "")
        if self.writer is not None:
            for split in ("dev", "test"):
                for kind in ("entity", "triplet"):
                    self.writer.add_scalar(f"{split}/{kind}_f1", record[split][kind]["f1"], record["epoch"])

    def summary(self, stopped: str = "finished") -> dict:
        history, state = self.state.history, self.state
        best = history[state.best_epoch - 1]
        max_test = max(history, key=lambda r: r["test"]["triplet"]["f1"])
        return {"stopped": stopped, "epochs_run": len(history), "best_epoch": state.best_epoch,
                "dev_triplet_f1": best["dev"]["triplet"]["f1"], "test_triplet_f1": best["test"]["triplet"]["f1"],
                "test_entity_f1": best["test"]["entity"]["f1"], "test_at_best_dev": best["test"],
                "best_on_test_for_comparison": {"epoch": max_test["epoch"],
                                                "test_triplet_f1": max_test["test"]["triplet"]["f1"]},
                "mean_train_seconds_per_epoch": sum(r["train_seconds"] for r in history) / len(history),
                "mean_test_eval_seconds": sum(r["test_seconds"] for r in history) / len(history),
                "peak_rss_mb": peak_rss_mb(), "skipped_steps": state.bad_steps_total,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
