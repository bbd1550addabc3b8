"""Training data plumbing: labels, and batch streams whose pixel_values are made as recognition makes them."""

from __future__ import annotations

import signal
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.model_input import fit_lines, input_shape, pixel_values
from pipeline.training.degrade import vary_scan
from pipeline.training.evaluate import load_pairs, read_gray, unreadable_reason
from pipeline.training.synth import LineSynthesizer, SyntheticLineDataset


def folder_pairs(directory: str, held_out: float = 0.0, pairs: list[tuple[Path, str]] | None = None
                 ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """A line folder's (image, text) pairs (`pairs`, where read already) split into (lines to
    train on, lines held out).

    Every n-th line by name is held out (n = 1 / held_out, rounded), so the split stays the same
    from run to run and a resumed run never trains on what it measures."""
    pairs = load_pairs(directory) if pairs is None else pairs
    if not pairs:
        raise FileNotFoundError(f"{directory}: no line image (.png, .jpg, .tif, ...) with a transcription "
                                "beside it (NAME.png with a non-empty NAME.gt.txt)")
    if held_out <= 0:
        return pairs, []
    if held_out >= 0.5:
        raise ValueError(f"--hold-out is the share of lines kept for measuring, below 0.5, not {held_out}")
    every = max(2, round(1 / held_out))
    if len(pairs) < every:
        return pairs, []  # too few lines to spare one
    return ([p for i, p in enumerate(pairs, 1) if i % every],
            [p for i, p in enumerate(pairs, 1) if not i % every])


def rehearsal_count(folder_lines: int, share: float) -> int:
    """Synthetic lines added to each epoch over `folder_lines` so they make `share` of it."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"--rehearse is the share of synthetic lines in each epoch, from 0 to below 1, not {share}")
    return round(folder_lines * share / (1.0 - share))


@dataclass(frozen=True)
class Rehearsal:
    """Synthetic lines of the kinds a base model learnt (print, receipts, hands), mixed into a
    folder's epochs so that a model tuned on one collection keeps reading the others."""

    lines: int  # per epoch
    height: int
    width: int
    seed: int
    mix: dict[str, float] | None = None

    def line(self, epoch: int, i: int) -> tuple[np.ndarray, str]:
        seed = int(np.random.SeedSequence((self.seed, epoch, i)).generate_state(1)[0])
        # Cut to the ink and sheared upright, as recognition prepares every crop and so every
        # folder line beside them (the shipped model's last steps were drawn so too, --ink-cut 1).
        sample = LineSynthesizer(self.height, self.width, seed=seed, mix=self.mix, ink_cut=1.0).sample()
        return sample.image, sample.text


class FolderLines(Dataset[tuple[np.ndarray, str]]):
    """Line images with ground truth from an ocropy/tesstrain-style folder.

    With `vary_seed`, each line is varied (degrade.vary_scan) afresh every epoch, the same way for
    the same seed, epoch and line. With `rehearsal`, its synthetic lines follow the folder's, new
    ones every epoch."""

    def __init__(
        self, pairs: list[tuple[Path, str]], vary_seed: int | None = None, rehearsal: Rehearsal | None = None
    ) -> None:
        self.pairs = pairs
        self.vary_seed = vary_seed
        self.rehearsal = rehearsal
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs) + (self.rehearsal.lines if self.rehearsal else 0)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str]:
        if i >= len(self.pairs) and self.rehearsal is not None:
            return self.rehearsal.line(self.epoch, i - len(self.pairs))
        path, text = self.pairs[i]
        try:
            image = read_gray(path)
        except (OSError, ValueError) as exc:
            # One broken file must not end hours of training without saying which it is.
            raise OSError(f"{path}: cannot read this training line image: {unreadable_reason(path, exc)}") from None
        if self.vary_seed is not None:
            image = vary_scan(image, np.random.default_rng((self.vary_seed, self.epoch, i)))
        return image, text


class Collator:
    """Batches (image, text) into pixel_values and labels (-100 on padding, EOS appended)."""

    def __init__(self, processor: Any, channels: int, max_length: int, trim: bool = False) -> None:
        self.processor, self.max_length, self.trim = processor, max_length, trim
        self.shape = input_shape(processor, channels)
        tok = processor.tokenizer
        self.eos, self.bos = tok.eos_token_id, tok.bos_token_id

    def __call__(self, batch: list[tuple[np.ndarray, str]]) -> dict[str, Any]:
        images, texts = zip(*batch)
        tok = self.processor.tokenizer
        ids = tok(list(texts), add_special_tokens=False).input_ids
        seqs = [seq[: self.max_length - 2] + [self.eos] for seq in ids]
        # Checkpoints whose tokenizer adds <s> (e.g. RoBERTa in microsoft/trocr-*) expect it first in labels.
        if getattr(tok, "add_bos_token", False):
            seqs = [[self.bos] + s for s in seqs]
        longest = max(len(s) for s in seqs)
        labels = torch.full((len(seqs), longest), -100, dtype=torch.long)
        for i, s in enumerate(seqs):
            labels[i, : len(s)] = torch.tensor(s)
        return {
            # Folder lines are fitted as recognition fits them; synthetic ones come fitted.
            "pixel_values": pixel_values(fit_lines(images, self.shape), self.shape, self.processor, self.trim),
            "labels": labels,
            "texts": list(texts),
        }


def _worker_init(_: int) -> None:
    # Ctrl-C, or a stop sent to the whole process group (timeout, systemd), must reach only the
    # trainer, which then saves a checkpoint: a worker killed first would crash the run unsaved.
    # Workers still end with the trainer (the DataLoader shuts them down, or they see it gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Data generation must not compete with the training step for the two cores.
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def batches(
    data: str,
    processor: Any,
    channels: int,
    max_length: int,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    start_lines: int = 0,
    curriculum_lines: int = 0,
    trim: bool = False,
    mix: dict[str, float] | None = None,
    ink_cut: float = 0.0,
    lines: list[tuple[Path, str]] | None = None,
    augment: bool = False,
    rehearse: float = 0.0,
) -> Generator[dict[str, Any], None, None]:
    """Endless training batches from synthetic lines (`data="synthetic"`) or a line folder: its
    `lines` where given (the folder less those held out, `folder_pairs`), else all of them, each
    varied every epoch with `augment`, and with `rehearse` that share of each epoch synthetic lines
    (of `mix`'s kinds).

    `trim` (for encoders that read any width) cuts each batch to its widest line; synthetic
    batches are then also made of lines of like width.
    """
    collate = Collator(processor, channels, max_length, trim)
    kwargs: dict[str, Any] = {
        "batch_size": batch_size,
        "collate_fn": collate,
        "num_workers": num_workers,
    }
    if num_workers > 0:
        # spawn, not fork: a forked child of a process that already ran OpenMP torch ops can deadlock.
        kwargs.update(
            worker_init_fn=_worker_init,
            prefetch_factor=4,
            persistent_workers=True,
            multiprocessing_context="spawn",
        )
    if data == "synthetic":
        shape = input_shape(processor, channels)
        dataset = SyntheticLineDataset(
            shape.height, shape.width, seed=seed, start_lines=start_lines, curriculum_lines=curriculum_lines,
            batch_size=batch_size if trim else None, mix=mix, ink_cut=ink_cut,
        )
        if trim:
            kwargs["batch_size"] = None  # the dataset hands over whole batches
        yield from DataLoader(dataset, **kwargs)
        return
    pairs = lines if lines is not None else folder_pairs(data)[0]
    count = rehearsal_count(len(pairs), rehearse)
    shape = input_shape(processor, channels)
    rehearsal = Rehearsal(count, shape.height, shape.width, seed, mix) if count else None
    folder = FolderLines(pairs, seed if augment else None, rehearsal)
    epoch = 0
    while True:
        folder.epoch = epoch  # each worker gets its own copy of the dataset, with this epoch's variations
        gen = torch.Generator().manual_seed(seed + epoch)
        yield from DataLoader(
            folder, shuffle=True, generator=gen, drop_last=len(folder) > batch_size, **kwargs
        )
        epoch += 1
