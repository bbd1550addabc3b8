"""Validation during training: CER of the decoder and CTC head on synthetic, --val-dir, held-out lines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.model_input import cuts_padding, fit_lines, input_shape, model_batches, pixel_values
from pipeline.training.evaluate import cer, load_pairs, read_gray
from pipeline.training.run_config import TrainConfig
from pipeline.training.synth import LineSynthesizer

ATTENTION_MARGIN = 0.9  # the decoder's CER must be below this share of CTC's to be chosen
VAL_SEED = 987_654  # held-out synthetic lines come from a seed the training stream never uses


@torch.inference_mode()
def recognize_batch(
    model: Any,
    processor: Any,
    images: list[np.ndarray],
    channels: int,
    device: str,
    max_new_tokens: int = 128,
    batch_size: int = 32,
) -> list[str]:
    """Greedy decode gray crops; used for validation during training."""
    was_training = model.training
    model.eval()
    texts = [""] * len(images)
    # Never ask for more tokens than the decoder has positions for.
    limit = int(getattr(model.generation_config, "max_length", None) or max_new_tokens + 1)
    max_length = min(max_new_tokens + 1, limit)
    for chunk, batch in _recognition_batches(model, processor, images, channels, device, batch_size):
        ids = model.generate(pixel_values=batch, max_length=max_length, num_beams=1, do_sample=False)
        for j, text in zip(chunk, processor.tokenizer.batch_decode(ids, skip_special_tokens=True)):
            texts[j] = text
    model.train(was_training)
    return texts


@torch.inference_mode()
def ctc_read_batch(
    model: Any, processor: Any, images: list[np.ndarray], channels: int, device: str,
    batch_size: int = 32,
) -> list[str]:
    """Read gray crops with the encoder's CTC head alone (best path)."""
    was_training = model.training
    model.eval()
    texts = [""] * len(images)
    for chunk, batch in _recognition_batches(model, processor, images, channels, device, batch_size):
        for j, (text, _) in zip(chunk, model.encoder.ctc_read(batch, processor.tokenizer)):
            texts[j] = text
    model.train(was_training)
    return texts


def _recognition_batches(
    model: Any, processor: Any, images: list[np.ndarray], channels: int, device: str, batch_size: int
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(indices into `images`, pixel_values) batches, formed and cut as recognition forms them."""
    trim = cuts_padding(model)
    shape = input_shape(processor, channels)
    lines = fit_lines(images, shape)
    for chunk, batch in model_batches(lines, shape, batch_size, trim):
        yield chunk, pixel_values(batch, shape, processor, trim).to(device)


def validate(
    model: Any,
    processor: Any,
    sets: dict[str, tuple[list[np.ndarray], list[str]]],
    channels: int,
    device: str,
    decoding: str = "measure",
) -> dict[str, float]:
    """CER per set of the decoder and, where the encoder has a CTC head, of the CTC reading.

    It also notes in the model's config how recognition's decode='auto' reads: `decoding`, or
    with 'measure' whichever of the two reads the validation lines better (the real lines of
    --val-dir where given: the synthetic ones flatter the decoder, which learns their language).
    """
    scores: dict[str, float] = {}
    has_ctc = getattr(model.encoder, "ctc_head", None) is not None
    judged = [name for name in sets if name != "synthetic"] or ["synthetic"]
    judged_refs: list[str] = []
    judged_reads: dict[str, list[str]] = {"attention": [], "ctc": []}
    for name, (images, refs) in sets.items():
        hyps = recognize_batch(model, processor, images, channels, device)
        scores[f"cer_{name}"] = round(cer(refs, hyps), 4)
        if has_ctc:
            ctc_hyps = ctc_read_batch(model, processor, images, channels, device)
            scores[f"ctc_cer_{name}"] = round(cer(refs, ctc_hyps), 4)
            if name in judged:
                judged_refs.extend(refs)
                judged_reads["attention"].extend(hyps)
                judged_reads["ctc"].extend(ctc_hyps)
    if has_ctc and decoding != "measure":
        model.config.quire_decoding = decoding
    elif has_ctc and judged_refs and getattr(model.config, "quire_decoding", None) != "rescore":
        # A model set to 'rescore' (the shipped one) reads with both heads and keeps doing so.
        # CTC reads 2-3.5x faster than the decoder (dev sets), so the decoder must earn its cost:
        # it is chosen only when clearly better (a tenth lower CER), not on a few lines' noise.
        attention_cer, ctc_cer = (cer(judged_refs, judged_reads[m]) for m in ("attention", "ctc"))
        clearly = attention_cer < ATTENTION_MARGIN * ctc_cer
        model.config.quire_decoding = "attention" if clearly else "ctc"
    return scores


def validation_sets(
    cfg: TrainConfig, processor: Any, seed: int = VAL_SEED, held_out: Sequence[tuple[Path, str]] = ()
) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """cfg.val_lines synthetic lines from `seed`, the line pairs of cfg.val_dir and each folder in
    it, and `held_out`, the lines held out of a training folder (`held_out_share`)."""
    shape = input_shape(processor, 1)  # the size only
    synth = LineSynthesizer(shape.height, shape.width, seed=seed)
    samples = [synth.sample() for _ in range(cfg.val_lines)]
    sets = {"synthetic": ([s.image for s in samples], [s.text for s in samples])}
    if cfg.val_dir:
        for sub in [
            Path(cfg.val_dir),
            *sorted(p for p in Path(cfg.val_dir).iterdir() if p.is_dir()),
        ]:
            pairs = load_pairs(sub)
            if pairs:
                sets[sub.name] = ([read_gray(p) for p, _ in pairs], [t for _, t in pairs])
    if held_out:
        sets["held_out"] = ([read_gray(p) for p, _ in held_out], [t for _, t in held_out])
    return sets
