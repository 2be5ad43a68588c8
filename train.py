"""Train (or re-evaluate) a D2E2S-style ASTE model. Read top to bottom: flags -> data -> model ->
optimizer -> epochs (train, evaluate dev and test, keep the best-dev epoch) -> summary.

    python train.py --dataset 14res --pretrained_deberta_name all-MiniLM-L6-v2 --epochs 10
    python train.py --eval_only --checkpoint Results/14res/<run> [--dataset 14lap | --test_file F]
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time

import torch

from aste import checkpoint as ckpt
from aste import trainer as T
from aste.encoding import encoder_max_length
from aste.evaluator import format_metrics, sentiment_table
from aste.input_reader import ReadReport
from models.d2e2s import D2E2S, ModelConfig
from models.encoder import load_config, load_encoder, load_tokenizer
from Parameter import build_parser, check_against_encoder, parse_args

log = logging.getLogger("aste")


def setup_logging(run_dir: str | None = None) -> None:
    handlers = [logging.StreamHandler(sys.stdout)]
    if run_dir:
        handlers.append(logging.FileHandler(os.path.join(run_dir, "train.log"), encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        handlers=handlers, force=True)


def eval_only(args) -> None:
    """Re-evaluate a saved run with the same metrics as training."""
    setup_logging()
    run_cfg = json.load(open(os.path.join(args.checkpoint, "config.json"), encoding="utf-8"))
    saved = run_cfg["args"]
    for key in ("max_span_size", "sen_filter_threshold", "max_pairs", "data_format"):
        if f"--{key}" not in sys.argv:
            setattr(args, key, saved[key])
    if "--dataset" not in sys.argv and not args.test_file:
        args.dataset = saved["dataset"]
    device = T.pick_device(args.device)
    model, tokenizer = load_run(args.checkpoint, device)
    report = ReadReport()
    path = args.test_file or T.split_paths(args)["test"]
    data = T.make_dataset(T.load_split(path, args, report), tokenizer, args, False, report,
                          encoder_max_length(tokenizer, model.encoder.config))
    evaluator = T.evaluate(model, T.make_loader(data, args, False, device), args, device, desc="test")
    m = evaluator.metrics()
    log.info("eval %s (%d sentences): %s", path, len(data), format_metrics(m))
    log.info("triplets by sentiment:\n%s", sentiment_table(m))
    out = os.path.join(args.checkpoint, "eval_" + os.path.basename(path).rsplit(".", 1)[0])
    ckpt.write_json({"file": path, "metrics": m, "data_report": report.to_dict()}, out + "_metrics.json")
    ckpt.write_jsonl(evaluator.prediction_records(), out + "_predictions.jsonl")
    log.info("wrote %s_metrics.json and %s_predictions.jsonl", out, out)


def load_run(run_dir: str, device: torch.device):
    """Model + tokenizer from a run folder alone (no network, no original encoder path needed)."""
    run_cfg = json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8"))
    enc_dir = os.path.join(run_dir, "encoder")
    encoder = load_encoder(enc_dir, pretrained=False, config=load_config(enc_dir))
    model = D2E2S(encoder, ModelConfig(**run_cfg["model"]))
    ckpt.load_weights(model, os.path.join(run_dir, "best.safetensors"), device)
    return model.to(device).eval(), load_tokenizer(enc_dir)


# flags that may differ between a run and its resumption (they do not change what is computed)
RESUME_FREE = {"resume", "threads", "num_workers", "log_every", "tensorboard", "device", "results_dir", "run_name",
               "cpu_heap_trim"}


def check_same_flags(run_dir: str, args) -> None:
    saved = json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8"))["args"]
    parser = build_parser()  # a flag added after the run was started: the run had its default
    saved = {k: saved.get(k, parser.get_default(k)) for k in vars(args)}
    diff = {k: (saved[k], v) for k, v in vars(args).items() if k not in RESUME_FREE and saved[k] != v}
    if diff:
        raise SystemExit("error: --resume with flags that differ from the run in " + run_dir + ": " +
                         ", ".join(f"--{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items()))


def _finished_summary(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return None
    return json.load(open(path, encoding="utf-8")).get("summary")


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.eval_only:
        return eval_only(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    dist = T.setup_distributed(args.device)
    device = T.pick_device(args.device, dist.local_rank)
    autocast_dtype = T.amp_dtype(args, device)

    # ---- encoder config first: dimension/head checks before anything heavy ---------------------
    enc_config = load_config(args.pretrained_deberta_name)
    check_against_encoder(args, enc_config.hidden_size)
    run_name = args.run_name or T.default_run_name(args)
    run_dir = os.path.join(args.results_dir, args.dataset, run_name)
    os.makedirs(run_dir, exist_ok=True)
    setup_logging(run_dir if dist.is_main else None)
    if not dist.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 reports
    state_path = os.path.join(run_dir, "state.pt")
    finished = _finished_summary(run_dir)
    if finished is not None and args.resume:
        log.info("%s already finished: %s", run_dir, json.dumps(finished))
        return finished
    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")) and not args.resume:
        raise SystemExit(f"error: {run_dir} already holds a run; use --resume to continue it or --run_name NAME")
    dist.barrier()
    T.seed_everything(args.seed)

    # ---- data ----------------------------------------------------------------------------------
    tokenizer = load_tokenizer(args.pretrained_deberta_name)
    max_length = encoder_max_length(tokenizer, enc_config)
    report = ReadReport()
    paths = T.split_paths(args)
    data = {}
    for split in T.SPLITS:
        sentences = T.load_split(paths[split], args, report)
        data[split] = T.make_dataset(sentences, tokenizer, args, split == "train", report, max_length)
        log.info("%s: %d sentences, %d triplets (%s)", split, len(data[split]),
                 sum(len(e.gold_triplets) for e in data[split].encoded), paths[split])
    if report.skipped or report.notes:
        log.warning("data report: %s", json.dumps(report.to_dict()["skipped"] | report.to_dict()["notes"]))
    loaders = {s: T.make_loader(data[s], args, s == "train", device, dist) for s in T.SPLITS}

    # ---- model ---------------------------------------------------------------------------------
    encoder = load_encoder(args.pretrained_deberta_name)
    if args.grad_checkpointing:
        # transformers 5 renamed it (the old name warns); 4.x has only the old one
        (getattr(encoder, "activation_checkpointing_enable", None) or encoder.gradient_checkpointing_enable)()
    if args.freeze_transformer:
        encoder.requires_grad_(False)
    cfg = T.model_config(args, enc_config.hidden_size)
    model = D2E2S(encoder, cfg).to(device)
    counts = T.parameter_counts(model)
    log.info("model: encoder %s (width %d), fusion %s%s, %s semantic GCN; parameters: %s",
             args.pretrained_deberta_name, enc_config.hidden_size, args.fusion,
             f" ({model.fusion.__class__.__name__})", "enhanced" if cfg.enhanced_semgcn else "plain",
             ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    train_model = model
    if dist.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        log.info("distributed: %d processes (%s), global batch %d", dist.world,
                 torch.distributed.get_backend(), args.batch_size)
    if args.compile:
        ok, why = T.can_compile(device)
        if ok:
            train_model = torch.compile(train_model)
        else:
            log.warning("--compile skipped: %s", why)

    # ---- optimizer -----------------------------------------------------------------------------
    # encoder at --lr, layers trained from scratch at --task_lr; no weight decay on biases and norms
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = args.lr if name.startswith("encoder.") else args.task_lr
        decay = 0.0 if (p.ndim < 2 or "log_vars" in name) else args.weight_decay
        groups.setdefault((lr, decay), []).append(p)
    param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    try:  # the fused kernel is ~10x faster than the per-tensor loop on CPU, and faster on GPU too
        optimizer = torch.optim.AdamW(param_groups, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(param_groups, foreach=True)
    updates_per_epoch = -(-len(loaders["train"]) // args.grad_accum_steps)
    total_updates = updates_per_epoch * args.epochs
    scheduler = T.linear_schedule(optimizer, int(args.lr_warmup * total_updates), total_updates)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)

    # ---- run folder: config, resume --------------------------------------------------------------
    state = T.TrainState()
    if args.resume and os.path.exists(state_path):
        check_same_flags(run_dir, args)
        saved = ckpt.load_state(state_path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = T.TrainState(**saved["train_state"])
        T.set_rng_state(saved["rng"])
        ckpt.write_jsonl(state.history, os.path.join(run_dir, "metrics.jsonl"))  # drop lines of an unfinished epoch
        log.info("resumed %s after epoch %d (best dev triplet F1 %.2f at epoch %d)", run_dir, state.epoch,
                 state.best_dev_f1, state.best_epoch)
    elif args.resume:
        log.info("--resume: no state in %s, starting fresh", run_dir)
    config = {"args": vars(args), "run_dir": run_dir, "model": cfg.to_dict(),
              "encoder": {"name": args.pretrained_deberta_name, "type": enc_config.model_type,
                          "hidden_size": enc_config.hidden_size, "layers": enc_config.num_hidden_layers},
              "modules": {"fusion": model.fusion.__class__.__name__, "semantic_gcn": model.sem_gcn.__class__.__name__},
              "parameters": counts, "data": {s: {"file": paths[s], "sentences": len(data[s])} for s in T.SPLITS},
              "data_report": report.to_dict(), "device": str(device),
              "versions": T.library_versions(), "git_commit": T.git_commit(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if dist.is_main:
        ckpt.write_json(config, os.path.join(run_dir, "config.json"))
        enc_dir = os.path.join(run_dir, "encoder")
        enc_config.save_pretrained(enc_dir)
        tokenizer.save_pretrained(enc_dir)
    writer = None
    if args.tensorboard and dist.is_main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    # ---- epochs --------------------------------------------------------------------------------
    best_path = os.path.join(run_dir, "best.safetensors")
    for epoch in range(state.epoch + 1, args.epochs + 1):
        data["train"].set_epoch(epoch)  # negative sampling and batch order are functions of (seed, epoch)
        loaders["train"].batch_sampler.set_epoch(epoch)
        try:
            train_stats = T.train_epoch(train_model, loaders["train"], optimizer, scheduler, scaler, args, device,
                                        autocast_dtype, state, epoch, writer, dist)
        except T.NonFiniteLoss as err:
            raise SystemExit(f"error: {err} ({best_path})") from None
        if not dist.is_main:  # rank 0 evaluates every dev/test sentence once, logs and saves
            state.epoch = epoch
            dist.barrier()
            continue
        t_eval = time.perf_counter()
        dev_eval = T.evaluate(model, loaders["dev"], args, device, autocast_dtype, "dev")
        dev_seconds = time.perf_counter() - t_eval
        t_eval = time.perf_counter()
        test_eval = T.evaluate(model, loaders["test"], args, device, autocast_dtype, "test")
        test_seconds = time.perf_counter() - t_eval
        dev, test = dev_eval.metrics(), test_eval.metrics()
        record = {"epoch": epoch, **train_stats, "lr": scheduler.get_last_lr()[0], "dev": dev, "test": test,
                  "dev_seconds": dev_seconds, "test_seconds": test_seconds, "peak_rss_mb": T.peak_rss_mb(),
                  "children_peak_rss_mb": T.children_peak_rss_mb()}
        if device.type == "cuda":
            record["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        if model.loss_weights is not None:
            record["loss_log_vars"] = model.loss_weights.log_vars.detach().cpu().tolist()
        improved = dev["triplet"]["f1"] > state.best_dev_f1
        if improved:
            state.best_dev_f1, state.best_epoch = dev["triplet"]["f1"], epoch
            if not args.no_checkpoint:
                ckpt.save_weights(model, best_path)
            ckpt.write_jsonl(test_eval.prediction_records(), os.path.join(run_dir, "test_predictions.jsonl"))
            ckpt.write_json(dev_eval.metrics() | {"epoch": epoch}, os.path.join(run_dir, "best_dev_metrics.json"))
        record["best_epoch"] = state.best_epoch
        state.history.append(record)
        state.epoch = epoch
        with open(os.path.join(run_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        log.info("epoch %d/%d | loss %.4f | train %.1fs (%.1f sent/s) dev %.1fs test %.1fs | peak RSS %.0f MB",
                 epoch, args.epochs, train_stats["loss"], train_stats["train_seconds"],
                 train_stats["sentences_per_second"], dev_seconds, test_seconds, record["peak_rss_mb"])
        log.info("  dev  %s", format_metrics(dev))
        log.info("  test %s%s", format_metrics(test), "   <- best dev so far" if improved else "")
        if writer is not None:
            for split, m in (("dev", dev), ("test", test)):
                for kind in ("entity", "triplet"):
                    writer.add_scalar(f"{split}/{kind}_f1", m[kind]["f1"], epoch)
        ckpt.save_state({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                         "train_state": vars(state), "rng": T.rng_state()}, state_path)
        dist.barrier()

    if not dist.is_main:
        torch.distributed.destroy_process_group()
        return None

    # ---- summary -------------------------------------------------------------------------------
    best = state.history[state.best_epoch - 1]
    max_test = max(state.history, key=lambda r: r["test"]["triplet"]["f1"])
    summary = {
        "best_epoch": state.best_epoch, "dev_triplet_f1": best["dev"]["triplet"]["f1"],
        "test_triplet_f1": best["test"]["triplet"]["f1"], "test_entity_f1": best["test"]["entity"]["f1"],
        "test_at_best_dev": best["test"],
        "best_on_test_for_comparison": {"epoch": max_test["epoch"], "test_triplet_f1": max_test["test"]["triplet"]["f1"]},
        "mean_train_seconds_per_epoch": sum(r["train_seconds"] for r in state.history) / len(state.history),
        "mean_test_eval_seconds": sum(r["test_seconds"] for r in state.history) / len(state.history),
        "peak_rss_mb": T.peak_rss_mb(), "children_peak_rss_mb": T.children_peak_rss_mb(),
        "skipped_steps": state.bad_steps_total,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    config["summary"] = summary
    ckpt.write_json(config, os.path.join(run_dir, "config.json"))
    log.info("test triplets by sentiment at best dev epoch %d:\n%s", state.best_epoch, sentiment_table(best["test"]))
    log.info("RESULT %s | best dev epoch %d | dev triplet F1 %.2f | test triplet F1 %.2f (entity F1 %.2f) | "
             "best-on-test, for comparison with papers that report it: %.2f (epoch %d)",
             run_dir, state.best_epoch, summary["dev_triplet_f1"], summary["test_triplet_f1"],
             summary["test_entity_f1"], summary["best_on_test_for_comparison"]["test_triplet_f1"], max_test["epoch"])
    if os.path.exists(state_path):
        os.remove(state_path)  # finished: the resume state (optimizer included) is no longer needed
    if writer is not None:
        writer.close()
    if dist.world > 1:
        torch.distributed.destroy_process_group()
    return summary


if __name__ == "__main__":
    main()
