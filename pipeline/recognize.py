"""Line crops to text with any transformers VisionEncoderDecoder checkpoint, batched, with confidences."""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import char_lm
from pipeline.config import DECODINGS, RETRY_BELOW, Settings
from pipeline.ctc_beam import Fusion, Reading, ctc_readings
from pipeline.decoder_scores import decoder_log_likelihoods
from pipeline.errors import ModelLoadError
from pipeline.line_image import stretch_width
from pipeline.model_input import (
    cuts_padding,
    encoder_channels,
    fit_lines,
    input_shape,
    model_batches,
    pixel_values,
)
from pipeline.model_location import locate_model
from pipeline.native_memory import bound_kernel_cache, release_free_memory
from pipeline.precision import use_bf16
from pipeline.types import LineText

log = logging.getLogger(__name__)

# 'rescore' decoding: how many CTC readings per line the decoder weighs, and how much the
# decoder's log-likelihood counts against the CTC head's (which reads better on its own).
RESCORE_CANDIDATES = 8
RESCORE_DECODER_WEIGHT = 1.0
# Rivals this many nats below the CTC head's best reading are dropped before the decoder pass,
# which costs in proportion to the readings it weighs.
RESCORE_MARGIN = 3.0
# Lines whose readings the decoder weighs in one go (their encoder states, up to 256 KB a line in
# fp32, are held until then).
RESCORE_GROUP_LINES = 256
# On a CPU the heap is trimmed once this many lines have been read: trimming after every call
# (32 lines a worker's batch) cost 5-9 % of the speed, as the next call faults its pages in again.
RELEASE_EVERY_LINES = 1000
# A line read with less than `retry_below` confidence is read again at these widths (narrow
# print crowds several letters into one 8 px encoder column; stretched, they get a column each)
# and the most confident reading is kept. A width is only tried on lines still doubtful after the
# one before it: the same CER as trying both on every doubtful line, for less time. Chosen on
# held-out synthetic lines (docs/BENCHMARKS.md).
RETRY_STRETCHES = (1.25, 1.5)
# 'rescore' with the model's character language model (char_lm.FILE_NAME in its folder): how much
# its log-probability counts in the search and the pick, and the bonus per character that offsets
# its cost per character. Chosen on synthetic lines of text the language model never read
# (bench/bench_language_model.py; 0.4-0.6 with a bonus of 0.75-1.0 read alike, docs/BENCHMARKS.md).
LM_WEIGHT = 0.5
LM_CHAR_BONUS = 0.75
# The language model reorders the CTC head's readings, so the right one may come from deeper in
# its list: the search keeps more of them.
LM_CANDIDATES = 16
# transformers builds a model on the "meta" device and then fills in its weights, and that
# device choice is global: a second thread loading at the same moment (`quire run`'s page-turning
# reader beside its recognizer) got weights with no data. One load at a time in a process.
_LOAD_LOCK = threading.Lock()


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {requested!r} was asked for but CUDA is not available")
    return requested


class Recognizer:
    """Loads a checkpoint once; `recognize` turns crops into LineText in the order given."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        beam: int = 1,
        batch_size: int = 32,
        max_new_tokens: int = 160,
        quantize: bool = False,
        decode: str = "auto",
        retry_below: float = RETRY_BELOW,
        precision: str = "auto",
        language_model: bool = True,
    ) -> None:
        import torch
        import transformers
        from transformers import AutoProcessor, VisionEncoderDecoderModel

        import pipeline.line_encoder  # noqa: F401  registers Quire's encoder with transformers' Auto*

        # Quire reports its own progress; the library's load bars and notices are noise here.
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.model_id = model
        self.beam = beam
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = pick_device(device)
        if self.device == "cpu":
            bound_kernel_cache()
        try:
            # int8 layers have no bf16 kernels: quantized models run their other layers in fp32.
            self.bf16 = use_bf16(precision, self.device) and not quantize
        except ValueError as exc:  # an unknown precision
            raise ModelLoadError(str(exc)) from None
        path = locate_model(model)
        try:
            with _LOAD_LOCK:
                self.processor = AutoProcessor.from_pretrained(path)
                # Any: a checkpoint of any VisionEncoderDecoder (Quire's encoder adds ctc_read and
                # ctc_nll), perhaps quantized below into a plain nn.Module.
                self.model: Any = VisionEncoderDecoderModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot load recognition model {model!r}: {exc}. Give a local folder with a "
                "VisionEncoderDecoder checkpoint, or a hub name on a machine with internet access"
            ) from exc
        self.model.eval()
        if not self.device.startswith("cuda"):
            self.model.float()  # weights may be stored in bf16; CPU kernels are fastest in fp32
        if quantize:
            if self.device != "cpu":
                raise ModelLoadError("--quantize (int8) is for CPU inference; drop it on GPU")
            with warnings.catch_warnings():  # deprecated in favour of torchao, still the CPU path
                warnings.simplefilter("ignore")
                self.model = torch.ao.quantization.quantize_dynamic(
                    self.model, _quantizable_linears(self.model), dtype=torch.qint8
                )
        self.model.to(self.device)
        stem = getattr(self.model.encoder, "stem", None)  # Quire's convolutional stem
        if stem is not None and self.device == "cpu":
            # The stem runs 1.4-1.8x faster over channels-last tensors on a CPU (max pooling 8-10x,
            # docs/BENCHMARKS.md); its activations follow the weights' layout.
            stem.to(memory_format=torch.channels_last)
        if self.bf16 and self.device.startswith("cuda") and torch.cuda.is_bf16_supported():
            self.model.to(torch.bfloat16)  # a GPU keeps the weights in bf16 too: half the memory

        self.decode = _pick_decoding(decode, self.model)
        self.fusion = _language_model(path, self.processor.tokenizer, self.model) if (
            language_model and self.decode in ("rescore", "ctc")) else None
        self.input = input_shape(self.processor, encoder_channels(self.model))
        self.trim = cuts_padding(self.model)
        self._unreleased_lines = 0  # read since the heap was last trimmed (`release_free_memory`)
        # Square-input checkpoints (TrOCR) resize every crop themselves: stretching means nothing there.
        self.retry_below = retry_below if self.trim and self.input.line_shaped else 0.0
        # Past the decoder's position table generation fails; small line models have short ones.
        positions = getattr(self.model.config.decoder, "max_position_embeddings", None)
        if positions:
            self.max_new_tokens = min(self.max_new_tokens, int(positions) - 1)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Recognizer:
        """A Recognizer as the QUIRE_* settings configure it (model, device, recognize.*);
        keyword arguments (model= too) take the place of the settings they name."""
        opts = settings.recognize
        kwargs: dict[str, Any] = {
            "model": settings.model, "device": settings.device, "beam": opts.beam,
            "batch_size": opts.batch_size, "max_new_tokens": opts.max_new_tokens, "decode": opts.decode,
            "retry_below": opts.retry_below, "precision": opts.precision,
            "language_model": opts.language_model,
        }
        kwargs.update(overrides)
        return cls(kwargs.pop("model"), **kwargs)

    def recognize(self, crops: Sequence[np.ndarray]) -> list[LineText]:
        """Recognize line crops; batches are formed by width (`model_batches`) so padding is small.

        Lines under `retry_below` confidence are read again stretched (RETRY_STRETCHES, each width
        only while the line is still doubtful), and the most confident reading is kept."""
        results = self._read(fit_lines(crops, self.input))
        for factor in RETRY_STRETCHES:
            # A line that already fills the input width would only be squeezed back.
            doubtful = [i for i, r in enumerate(results)
                        if r.confidence < self.retry_below and self._has_room(crops[i], factor)]
            if not doubtful:
                continue
            again = self._read(fit_lines([stretch_width(crops[i], factor) for i in doubtful], self.input))
            for i, line in zip(doubtful, again):
                if line.confidence > results[i].confidence:
                    results[i] = line
        if self.device == "cpu":
            self._unreleased_lines += len(crops)
            if self._unreleased_lines >= RELEASE_EVERY_LINES:
                release_free_memory()  # the calls' activations, or the heap grows run after run
                self._unreleased_lines = 0
        return results

    def _has_room(self, crop: np.ndarray, factor: float) -> bool:
        """Whether the crop, stretched by `factor`, still fits the input width unsqueezed.

        Judged on the crop as given, not as `normalize_ink` cuts it: the cut crop is often wider
        for its height, so some lines pass that the model then reads a little squeezed, yet that
        re-read still helps them (judging the cut crop read held-out hands worse,
        docs/BENCHMARKS.md, session 19)."""
        h, w = np.asarray(crop).shape[:2]
        return h > 0 and w * factor * self.input.height / h <= self.input.width

    def _read(self, lines: list[np.ndarray]) -> list[LineText]:
        import torch

        results: list[LineText | None] = [None] * len(lines)
        batches = model_batches(lines, self.input, self.batch_size, self.trim)
        # On a CPU the weights stay fp32 and autocast runs the matrix products in bf16.
        with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16):
            if self.decode == "rescore":
                # The decoder weighs the readings of several batches together: fewer, fuller
                # passes. Their encoder states wait in memory, so only so many lines at a time.
                indices: list[int] = []
                proposed: list = []
                for chunk, batch in batches:
                    indices += chunk
                    proposed += self._propose(self._pixel_values(batch))
                    if len(proposed) >= RESCORE_GROUP_LINES:
                        for index, line in zip(indices, self._pick(proposed)):
                            results[index] = line
                        indices, proposed = [], []
                for index, line in zip(indices, self._pick(proposed)):
                    results[index] = line
            else:
                for chunk, batch in batches:
                    for index, line in zip(chunk, self._recognize_batch(self._pixel_values(batch))):
                        results[index] = line
        return [r for r in results if r is not None]

    def _pixel_values(self, lines: Sequence[np.ndarray]):
        values = pixel_values(lines, self.input, self.processor, self.trim)
        return values.to(self.device, dtype=next(self.model.parameters()).dtype)

    def _recognize_batch(self, pixels) -> list[LineText]:
        import torch

        if self.decode == "ctc":
            return self._recognize_ctc(pixels)
        with torch.inference_mode():
            encoded = self.model.encoder(pixel_values=pixels)
            hidden = encoded.last_hidden_state  # generate expands `encoded` in place for beams
            out = self.model.generate(
                pixel_values=pixels,
                encoder_outputs=encoded,
                max_new_tokens=self.max_new_tokens,
                num_beams=self.beam,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
            confidences = self._confidences(out)
            agreement = self._ctc_agreement(hidden, out.sequences)
        if agreement is not None:
            # Both readings must agree for a high score: the decoder alone can be confidently
            # wrong (a fluent guess), the encoder's CTC reading has no language model to guess with.
            confidences = [math.sqrt(c * a) for c, a in zip(confidences, agreement)]
        texts = self.processor.batch_decode(out.sequences, skip_special_tokens=True)
        return [LineText(t.strip(), c) for t, c in zip(texts, confidences)]

    def _recognize_ctc(self, pixels) -> list[LineText]:
        """One encoder pass, no autoregressive loop: the encoder's CTC head reads the line, by
        its best path, or with a language model by the search's best fused reading."""
        import torch

        if self.fusion is None:
            with torch.inference_mode():
                read = self.model.encoder.ctc_read(pixels, self.processor.tokenizer)
            return [LineText(text.strip(), confidence) for text, confidence in read]
        results = []
        for _, readings in self._propose(pixels):
            ids, ctc_lp, _ = readings[0]
            # Per character (an end counted), as rescore's: how sure the eye is, LM left out.
            confidence = math.exp(ctc_lp / (len(ids) + 1))
            results.append(LineText(self.processor.tokenizer.decode(list(ids), skip_special_tokens=True).strip(),
                                    confidence))
        return results

    def _propose(self, pixels) -> list[tuple[object, list[Reading]]]:
        """'rescore', first half: per line, its encoder states and the CTC head's likeliest
        readings (token ids, CTC and language-model log-probability), those within
        RESCORE_MARGIN of the best (the language model weighed in, if there is one)."""
        import torch

        encoder = self.model.encoder
        blank = encoder.config.ctc_blank_id
        specials = frozenset(self.processor.tokenizer.all_special_ids) - {blank}
        fusion = self.fusion
        with torch.inference_mode():
            hidden = encoder(pixel_values=pixels).last_hidden_state
            lines = ctc_readings(encoder.ctc_log_probs(hidden), blank, specials, fusion=fusion,
                                 beam=LM_CANDIDATES if fusion else RESCORE_CANDIDATES)
        return [
            (states, [r for r in readings if _fused(r, fusion) >= _fused(readings[0], fusion) - RESCORE_MARGIN])
            for states, readings in zip(hidden, lines)
        ]

    def _pick(self, proposed) -> list[LineText]:
        """'rescore', second half: the decoder, which has learnt how text goes on ("RM" after
        "TOTAL", not "RN"), weighs each line's readings, and the best of all scores is kept.
        The confidence leaves the language model out: it says how sure the model is of what it
        saw, not how likely the text is."""
        owners = [i for i, (_, readings) in enumerate(proposed) for _ in readings]
        texts = [reading[0] for _, readings in proposed for reading in readings]
        states = [line_states for line_states, _ in proposed]
        decoder_lp = iter(decoder_log_likelihoods(self.model, states, owners, texts, self.batch_size))
        fusion = self.fusion
        results = []
        for _, line in proposed:
            scored = [(reading, next(decoder_lp)) for reading in line]
            (ids, ctc_lp, _), dec_lp = max(
                scored, key=lambda r: _fused(r[0], fusion) + RESCORE_DECODER_WEIGHT * r[1])
            # Per character (EOS counted), as in the attention path: both readers must be sure.
            steps = len(ids) + 1
            confidence = math.exp((ctc_lp + dec_lp) / (2 * steps))
            text = self.processor.tokenizer.decode(list(ids), skip_special_tokens=True)
            results.append(LineText(text.strip(), confidence))
        return results

    def _ctc_agreement(self, hidden, sequences) -> list[float] | None:
        """How likely the encoder's CTC head finds the decoder's text: exp(-NLL per character).

        None for models without a CTC head (e.g. microsoft/trocr-*).
        """
        encoder = self.model.encoder
        if getattr(encoder, "ctc_head", None) is None:
            return None
        config = self.model.generation_config
        special = {config.pad_token_id, config.eos_token_id, config.decoder_start_token_id,
                   config.bos_token_id}
        nll, lengths = encoder.ctc_nll(
            hidden,
            sequences,
            {t for t in special if t is not None},
            reduction="none",
            zero_infinity=False,  # text longer than the encoder's columns is impossible: score 0
        )
        per_char = nll.cpu() / (lengths.cpu() + 1).float()
        return [float(math.exp(-x)) if math.isfinite(x) else 0.0 for x in per_char.tolist()]

    def _confidences(self, out) -> list[float]:
        """Geometric mean of the chosen tokens' probabilities (EOS included), per line."""
        if self.beam > 1 and getattr(out, "sequences_scores", None) is not None:
            return [float(math.exp(s)) for s in out.sequences_scores.float().tolist()]
        scores = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        scores = scores.float()
        generated = out.sequences[:, -scores.shape[1] :]
        pad = self.model.generation_config.pad_token_id
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        confidences = []
        for row_tokens, row_scores in zip(generated.tolist(), scores.tolist()):
            kept: list[float] = []
            for token, score in zip(row_tokens, row_scores):
                if token == pad and kept and token not in eos_ids:
                    break
                kept.append(score)
                if token in eos_ids:
                    break
            finite = [s for s in kept if math.isfinite(s)]
            confidences.append(float(math.exp(sum(finite) / len(finite))) if finite else 0.0)
        return confidences


def _fused(reading: Reading, fusion: Fusion | None) -> float:
    """A reading's CTC log-probability with the language model's weighed in, if there is one."""
    ids, ctc_lp, lm_lp = reading
    return ctc_lp + (fusion.weight * lm_lp + fusion.bonus * len(ids) if fusion else 0.0)


def _language_model(path: str, tokenizer, model) -> Fusion | None:
    """The character language model kept in the model's folder, if it has one and the model
    reads characters (a CTC head, one character per token)."""
    lm_path = Path(path) / char_lm.FILE_NAME
    if not lm_path.is_file() or getattr(model.encoder, "ctc_head", None) is None:
        return None
    try:
        lm = char_lm.load(lm_path)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    symbols = lm.symbol_of_tokens(tokenizer.get_vocab(), int(model.encoder.config.ctc_vocab_size))
    return Fusion(lm, symbols, LM_WEIGHT, LM_CHAR_BONUS)


def _pick_decoding(requested: str, model) -> str:
    """'attention' (the decoder generates), 'ctc' (the encoder's CTC head reads) or 'rescore'
    (the CTC head proposes readings, the decoder picks one).

    'auto' takes what training stored in the model's config (`quire_decoding`: measured on
    validation lines, or set with `quire train --decoding`); models without it use attention.
    """
    if requested not in DECODINGS:
        raise ModelLoadError(f"decode must be one of {', '.join(DECODINGS)}, not {requested!r}")
    has_ctc = getattr(model.encoder, "ctc_head", None) is not None
    if requested == "auto":
        requested = getattr(model.config, "quire_decoding", None) or "attention"
        return requested if requested == "attention" or has_ctc else "attention"
    if requested in ("ctc", "rescore") and not has_ctc:
        raise ModelLoadError(f"this model has no CTC head for {requested!r}; decode with 'attention'")
    return requested


def _quantizable_linears(model) -> set[str]:
    """Names of the Linear layers int8 dynamic quantization can replace.

    Layers inside torch's TransformerEncoderLayer stay fp32: its fused inference path reads
    `linear.weight` as a tensor, which a quantized Linear no longer has.
    """
    import torch

    inside = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.TransformerEncoderLayer)
    }
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and not any(name.startswith(prefix + ".") for prefix in inside)
    }
