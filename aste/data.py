"""From a run's flags to its datasets and loaders: which files, read and parsed, encoded, batched."""
from __future__ import annotations

import functools
import os

import torch
from torch.utils.data import DataLoader

from .input_reader import ReadReport, read_sentences
from .parsing import add_parses
from .sampling import ASTEDataset, LengthBucketSampler, ShardedBatches, ShuffledBatchSampler, collate

SPLITS = ("train", "dev", "test")
PARSE_CACHE = os.path.join("data", ".parse_cache")


def split_paths(args) -> dict[str, str]:
    fmt = args.data_format
    data_dir = args.data_dir or os.path.join("data", "aste-v2" if fmt == "aste" else "d2e2s")
    name = "{}_triplets.txt" if fmt == "aste" else "{}_dep_triple_polarity_result.json"
    return {s: getattr(args, f"{s}_file", None) or os.path.join(data_dir, args.dataset, name.format(s)) for s in SPLITS}


def load_split(path: str, args, report: ReadReport):
    sentences = read_sentences(path, args.data_format, args.on_bad_example, report)
    if any(s.heads is None for s in sentences):
        add_parses(sentences, args.spacy_model, cache_dir=PARSE_CACHE)
    return sentences


def make_dataset(sentences, tokenizer, args, train: bool, report: ReadReport, max_length: int) -> ASTEDataset:
    return ASTEDataset(sentences, tokenizer, max_span_size=args.max_span_size, train=train,
                       neg_entity_count=args.neg_entity_count, neg_triple_count=args.neg_triple_count,
                       seed=args.seed, max_length=max_length, on_bad_example=args.on_bad_example, report=report,
                       neg_overlap_fraction=args.neg_overlap_fraction, neg_overlap_pairs=args.neg_overlap_pairs)


def make_loader(dataset: ASTEDataset, args, train: bool, device: torch.device, dist=None) -> DataLoader:
    if train:
        cls = LengthBucketSampler if args.bucket_by_length else ShuffledBatchSampler
        sampler = cls(dataset.lengths(), args.batch_size, shuffle=True, seed=args.seed)
        if dist is not None and dist.world > 1:
            sampler = ShardedBatches(sampler, dist.rank, dist.world)
    else:  # evaluation: sorted by length, every sentence exactly once, no batch dropped
        sampler = LengthBucketSampler(dataset.lengths(), args.batch_size, shuffle=False)
    # Workers are not persistent: each epoch's workers start from the dataset as set_epoch left it, so
    # negative sampling is the same function of (seed, epoch, sentence) with any --num_workers.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=args.num_workers,
                      collate_fn=functools.partial(collate, pad_id=dataset.pad_id),  # picklable for workers
                      pin_memory=device.type == "cuda", persistent_workers=False)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Negative sampling and batch order are functions of (seed, epoch)."""
    loader.dataset.set_epoch(epoch)
    loader.batch_sampler.set_epoch(epoch)
