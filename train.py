"""Train (or re-evaluate) a D2E2S-style ASTE model. main() reads top to bottom in stages:
flags -> run folder -> data -> model -> optimizer -> fit (train, evaluate dev and test, keep the
best-dev epoch) -> summary.

    python train.py --dataset 14res --pretrained_deberta_name all-MiniLM-L6-v2 --epochs 10
    python train.py --eval_only --checkpoint Results/14res/<run> [--dataset 14lap | --test_file F]
"""
from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import shlex
import sys
import time

import torch

from aste.atomic import remove_temp_files
from aste.data import SPLITS, load_split, make_dataset, make_loader, split_paths
from aste.encoding import encoder_max_length
from aste.environment import (amp_dtype, can_compile, environment_record, pick_device, seed_everything,
                              setup_distributed)
from aste.cli import run_cli
from aste.evaluator import format_metrics, sentiment_table
from aste.input_reader import ReadReport
from aste.runs import RunFolder, load_run, resume_conflicts, saved_flag
from aste.trainer import OutOfMemory, Trainer, evaluate, is_out_of_memory
from models import D2E2S, ModelConfig
from models.encoder import load_config, load_encoder, load_tokenizer
from Parameter import (build_parser, check_against_encoder, default_run_name, epochs_for, model_hidden_dim,
                       parse_args)

log = logging.getLogger("aste")
STARTED = time.monotonic()  # --time_budget counts from the start of the process
EXIT_TIME_BUDGET = 75  # "try again later" (EX_TEMPFAIL): neither success nor failure, for scripts
LOG_FORMAT = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")


def setup_logging() -> logging.handlers.MemoryHandler:
    """Log to stdout, and keep every record (Python warnings included) until the run folder is known:
    log_to_run_folder then writes them to its train.log first."""
    early = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
    console = logging.StreamHandler(sys.stdout)
    for h in (early, console):
        h.setFormatter(LOG_FORMAT)
    logging.basicConfig(level=logging.INFO, handlers=[console, early], force=True)
    logging.captureWarnings(True)  # warnings (ours and the libraries') reach train.log too
    logging.raiseExceptions = False  # a full disk under train.log: the run's own one-line error, no logging tracebacks
    return early


def log_to_run_folder(run_dir: str, early: logging.handlers.MemoryHandler) -> None:
    file_handler = logging.FileHandler(os.path.join(run_dir, "train.log"), encoding="utf-8")
    file_handler.setFormatter(LOG_FORMAT)
    early.setTarget(file_handler)
    early.flush()  # what was logged before the folder existed
    root = logging.getLogger()
    root.removeHandler(early)
    early.close()
    root.addHandler(file_handler)


# ---- stages ---------------------------------------------------------------------------------------
def open_run_folder(args, dist, early_log) -> RunFolder:
    run = RunFolder.inside(args.results_dir, args.dataset, args.run_name or default_run_name(args))
    try:
        os.makedirs(run.path, exist_ok=True)
    except OSError as err:
        raise SystemExit(f"error: cannot create the run folder {run.path}: {err.strerror}") from None
    if not os.access(run.path, os.W_OK):
        raise SystemExit(f"error: the run folder {run.path} is not writable (--results_dir)")
    if dist.is_main:
        run.claim()  # before this process touches the folder: no links in it, and the lock (one process per run)
        log_to_run_folder(run.path, early_log)
    else:
        logging.getLogger().removeHandler(early_log)
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 reports
    if run.has_history() and not args.resume:
        raise SystemExit(f"error: {run.path} already holds a run; use --resume to continue it or --run_name NAME")
    if dist.is_main:
        for path in remove_temp_files(run.path):
            log.info("removed %s, left by an interrupted write", path)
    return run


def load_data(args, tokenizer, max_length: int, device, dist):
    report = ReadReport()
    paths = split_paths(args)
    datasets = {}
    for split in SPLITS:
        sentences = load_split(paths[split], args, report)
        datasets[split] = make_dataset(sentences, tokenizer, args, split == "train", report, max_length)
        if len(datasets[split]) == 0:
            raise SystemExit(f"error: {paths[split]}: no usable sentence in the {split} split")
        log.info("%s: %d sentences, %d triplets (%s)", split, len(datasets[split]),
                 sum(len(e.gold_triplets) for e in datasets[split].encoded), paths[split])
    if report.skipped or report.notes:
        log.warning("data report: %s", json.dumps(report.to_dict()["skipped"] | report.to_dict()["notes"]))
    loaders = {s: make_loader(datasets[s], args, s == "train", device, dist) for s in SPLITS}
    files = {s: {"file": paths[s], "sentences": len(datasets[s])} | file_identity(paths[s]) for s in SPLITS}
    return loaders, files, report


def set_epochs(args, run: RunFolder, train_sentences: int | None, saved: dict | None = None) -> bool:
    """--epochs, when not given: --sentence_budget over the training sentences, or, resuming a run made
    before --sentence_budget existed, the number it was made with. config.json records the number, which
    --resume compares. True when it came from the budget (--config then derives it again)."""
    if args.epochs is not None:
        return False
    if saved is None and args.resume and run.has_state():
        saved = run.read_config()
    if saved is not None and "sentence_budget" not in saved["args"]:
        args.epochs = saved["args"]["epochs"]
        log.info("%d epochs, as the run in %s was made before --sentence_budget", args.epochs, run.path)
        return False
    args.epochs = epochs_for(args.sentence_budget, train_sentences)
    log.info("%d epochs: --sentence_budget %d over %d training sentences", args.epochs, args.sentence_budget,
             train_sentences)
    if args.epochs > 50:
        log.warning("%d epochs from only %d training sentences: give --epochs to choose another number",
                    args.epochs, train_sentences)
    return True


def file_identity(path: str) -> dict:
    """Size and sha256 of a data file: what --resume compares (paths change between Kaggle sessions)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def build_model(args, enc_config, device, dist) -> tuple[D2E2S, torch.nn.Module]:
    """The model, and what the training steps call: the model itself, or its DDP / compiled wrapper."""
    encoder = load_encoder(args.pretrained_deberta_name)
    if args.grad_checkpointing:
        # transformers 5 renamed it (the old name warns); 4.x has only the old one
        (getattr(encoder, "activation_checkpointing_enable", None) or encoder.gradient_checkpointing_enable)()
    if args.freeze_transformer:
        encoder.requires_grad_(False)
    cfg = ModelConfig.from_flags(vars(args), enc_config.hidden_size, model_hidden_dim(args, enc_config.hidden_size))
    try:
        model = D2E2S(encoder, cfg).to(device)
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        raise OutOfMemory(f"out of memory building the model on {device} ({' '.join(str(err).split())[:160]}); "
                          "check --hidden_dim, --size_embedding and --pair_distance_embedding") from None
    log.info("model: encoder %s (width %d), fusion %s (%s), %s semantic GCN; parameters: %s",
             args.pretrained_deberta_name, enc_config.hidden_size, args.fusion, model.fusion.__class__.__name__,
             "enhanced" if args.use_enhanced_semgcn else "plain",
             ", ".join(f"{k} {v:,}" for k, v in model.parameter_counts().items()))
    train_model = model
    if dist.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        log.info("distributed: %d processes (%s), global batch %d", dist.world,
                 torch.distributed.get_backend(), args.batch_size)
    if args.compile:
        ok, why = can_compile(device)
        if ok:
            train_model = torch.compile(train_model)
        else:
            log.warning("--compile skipped: %s", why)
    return model, train_model


def check_resume_flags(run: RunFolder, saved: dict, args) -> None:
    conflicts = resume_conflicts(saved["args"], args, vars(build_parser().parse_args([])))
    if conflicts:
        raise SystemExit(f"error: --resume with flags that differ from the run in {run.path}: " + ", ".join(conflicts))


def already_finished(run: RunFolder, args, dist) -> dict | None:
    finished = run.finished_summary()
    if finished is not None:
        saved = run.read_config()
        set_epochs(args, run, saved.get("data", {}).get("train", {}).get("sentences"), saved)
        check_resume_flags(run, saved, args)
        if dist.is_main:
            run.remove_state()  # left behind if the run was killed between its final config write and this removal
        log.info("%s already finished: %s", run.path, json.dumps(finished))
    return finished


def tensorboard_writer(run: RunFolder):
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(run.file("tensorboard"))


def check_resume_data(run: RunFolder, saved: dict, config: dict) -> None:
    """A run resumes on the data it was trained on: the same file contents and updates per epoch (the
    learning-rate schedule counts them). Runs that predate the check recorded neither."""
    for split, now in config["data"].items():
        before = saved.get("data", {}).get(split, {})
        if "sha256" in before and (before["bytes"], before["sha256"]) != (now["bytes"], now["sha256"]):
            raise SystemExit(f"error: --resume: the {split} file {now['file']} ({now['bytes']} bytes) is not the one "
                             f"the run in {run.path} was trained on ({before['file']}, {before['bytes']} bytes, "
                             "another sha256); resume with that data, or start a new run")
    if saved.get("updates_per_epoch", config["updates_per_epoch"]) != config["updates_per_epoch"]:
        raise SystemExit(f"error: --resume: {config['updates_per_epoch']} updates per epoch, but the run in {run.path} "
                         f"was trained with {saved['updates_per_epoch']}; resume with the same data and flags")


def resume_or_start(trainer: Trainer, run: RunFolder, args, dist, config: dict) -> None:
    if args.resume and run.has_state():
        saved = run.read_config()
        check_resume_flags(run, saved, args)
        check_resume_data(run, saved, config)
        trainer.load_state_dict(run.load_state())
        if dist.is_main:
            run.write_history(trainer.state.history)  # epochs finished after the saved state are run again
        best_file_epoch = run.best_epoch_on_disk()
        if best_file_epoch is not None and best_file_epoch != trainer.state.best_epoch:
            log.warning("best.safetensors and test_predictions.jsonl hold epoch %d, but the saved state's best epoch "
                        "is %d (the run was stopped between writing them and the state); they are replaced when a "
                        "resumed epoch beats dev triplet F1 %.2f", best_file_epoch, trainer.state.best_epoch,
                        trainer.state.best_dev_f1)
        log.info("resumed %s after epoch %d (best dev triplet F1 %.2f at epoch %d)", run.path,
                 trainer.state.epoch, trainer.state.best_dev_f1, trainer.state.best_epoch)
    elif args.resume:
        log.info("--resume: no saved state in %s, starting from epoch 1", run.path)
        if dist.is_main:
            run.clear_outputs()
    dist.barrier()


def finish(trainer: Trainer, run: RunFolder, config: dict, stopped: str) -> dict:
    summary = trainer.summary(stopped)
    if stopped == "patience":
        log.info("stopped early: dev triplet F1 has not improved for %d epochs (--patience) since epoch %d",
                 trainer.args.patience, summary["best_epoch"])
    run.write_config(config | {"summary": summary})
    best = trainer.state.history[summary["best_epoch"] - 1]
    log.info("test triplets by sentiment at best dev epoch %d:\n%s", summary["best_epoch"], sentiment_table(best["test"]))
    log.info("RESULT %s | best dev epoch %d | dev triplet F1 %.2f | test triplet F1 %.2f (entity F1 %.2f) | "
             "best-on-test, for comparison with papers that report it: %.2f (epoch %d)",
             run.path, summary["best_epoch"], summary["dev_triplet_f1"], summary["test_triplet_f1"],
             summary["test_entity_f1"], summary["best_on_test_for_comparison"]["test_triplet_f1"],
             summary["best_on_test_for_comparison"]["epoch"])
    run.remove_state()  # finished: the resume state (optimizer included) is no longer needed
    return summary


def run_config(args, run: RunFolder, model: D2E2S, enc_config, files: dict, report: ReadReport,
               updates_per_epoch: int, device, epochs_from_budget: bool) -> dict:
    """config.json: every flag, the model, encoder, data files (with size and sha256) and environment."""
    return {"args": vars(args), "run_dir": run.path, "model": model.cfg.to_dict(),
            "encoder": {"name": args.pretrained_deberta_name, "type": enc_config.model_type,
                        "hidden_size": enc_config.hidden_size, "layers": enc_config.num_hidden_layers},
            "modules": {"fusion": model.fusion.__class__.__name__, "semantic_gcn": model.sem_gcn.__class__.__name__},
            "parameters": model.parameter_counts(), "data": files, "updates_per_epoch": updates_per_epoch,
            "epochs_from_budget": epochs_from_budget,
            "data_report": report.to_dict(), "environment": environment_record(device, args.spacy_model),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def main(argv=None) -> dict | int | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    early_log = setup_logging()
    args = parse_args(argv)                                                    # flags
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.eval_only:
        return eval_only(args, argv)
    dist = setup_distributed(args.device)
    device = pick_device(args.device, dist.local_rank)
    autocast_dtype = amp_dtype(args.amp, device)
    enc_config = load_config(args.pretrained_deberta_name)
    check_against_encoder(args, enc_config.hidden_size)

    run = open_run_folder(args, dist, early_log)                               # run folder
    if args.resume and (finished := already_finished(run, args, dist)) is not None:
        return finished
    dist.barrier()
    seed_everything(args.seed)

    tokenizer = load_tokenizer(args.pretrained_deberta_name)                   # data
    loaders, files, report = load_data(args, tokenizer, encoder_max_length(tokenizer, enc_config), device, dist)
    from_budget = set_epochs(args, run, files["train"]["sentences"])

    model, train_model = build_model(args, enc_config, device, dist)          # model

    updates_per_epoch = -(-len(loaders["train"]) // args.grad_accum_steps)     # optimizer
    writer = tensorboard_writer(run) if args.tensorboard and dist.is_main else None
    trainer = Trainer(model, train_model, args, device, autocast_dtype, updates_per_epoch, dist, writer)
    config = run_config(args, run, model, enc_config, files, report, updates_per_epoch, device, from_budget)
    resume_or_start(trainer, run, args, dist, config)
    if dist.is_main:
        run.write_config(config)
        run.save_encoder_files(enc_config, tokenizer)

    deadline = STARTED + 3600 * args.time_budget if args.time_budget else None  # fit
    stopped = trainer.fit(loaders, run, deadline)

    result = None                                                              # summary
    if stopped == "time_budget":
        resume = ["python", "train.py", *argv] + ([] if args.resume else ["--resume"])
        log.info("time budget: stopped after epoch %d of %d, resume state saved; resume with: %s",
                 trainer.state.epoch, args.epochs, shlex.join(resume))
        result = EXIT_TIME_BUDGET
    elif dist.is_main:
        result = finish(trainer, run, config, stopped)
    if writer is not None:
        writer.close()
    dist.close()
    return result


# what --eval_only takes from the run unless given on the command line (how the run read, decoded and
# scored data: a run trained under --amp fp16 was evaluated under autocast every epoch)
EVAL_FROM_RUN = ("max_span_size", "sen_filter_threshold", "max_pairs", "data_format", "overlap_filter", "data_dir",
                 "on_bad_example", "spacy_model", "amp")


def take_flags_from_run(args, saved: dict, argv: list[str]) -> None:
    """Set EVAL_FROM_RUN (and the dataset, without --test_file) from the run's saved flags, except those
    given on the command line."""
    given = {a.lstrip("-").split("=")[0] for a in argv if a.startswith("--")}  # the parser takes no abbreviations
    parser = build_parser()
    for key in EVAL_FROM_RUN:
        if key not in given:
            setattr(args, key, saved_flag(saved, key, parser.get_default(key)))
    if "dataset" not in given and not args.test_file:
        args.dataset = saved["dataset"]


def eval_only(args, argv: list[str]) -> None:
    """Re-evaluate a saved run with the same metrics as training."""
    device = pick_device(args.device)
    run = RunFolder(args.checkpoint)
    run.claim()  # no links in the folder, and no other process writing to it
    model, tokenizer, run_cfg = load_run(args.checkpoint, device)
    take_flags_from_run(args, run_cfg["args"], argv)
    report = ReadReport()
    path = args.test_file or split_paths(args)["test"]
    data = make_dataset(load_split(path, args, report), tokenizer, args, False, report,
                        encoder_max_length(tokenizer, model.encoder.config))
    evaluator = evaluate(model, make_loader(data, args, False, device), args.sen_filter_threshold, args.max_pairs,
                         device, amp_dtype(args.amp, device), desc="test", overlap=args.overlap_filter)
    m = evaluator.metrics()
    log.info("eval %s (%d sentences): %s", path, len(data), format_metrics(m))
    log.info("triplets by sentiment:\n%s", sentiment_table(m))
    name = os.path.basename(path).rsplit(".", 1)[0] if args.test_file else f"{args.dataset}_test"
    decoding = {k: getattr(args, k) for k in ("sen_filter_threshold", "max_pairs", "overlap_filter", "max_span_size")}
    parser = build_parser()
    for key, value in decoding.items():  # re-scored under another decoding: beside the run's own files
        if value != saved_flag(run_cfg["args"], key, parser.get_default(key)):
            name += f"_{value}" if key == "overlap_filter" else f"_{key}{value:g}"
    out = run.write_eval(name, {"file": path, "decoding": decoding, "metrics": m, "data_report": report.to_dict()},
                         evaluator.prediction_records())
    log.info("wrote %s_metrics.json and %s_predictions.jsonl", out, out)


if __name__ == "__main__":
    sys.exit(run_cli(main))
