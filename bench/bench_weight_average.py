"""Does the saved weight average read better than the training weights it was averaged from?

A run trained with --ema-decay saves the average as the model and the last step's weights in
checkpoint/training_weights.safetensors. This reads the same lines with both: held-out synthetic
lines (a seed neither training nor its validation uses) and the real dev lines, decoder (greedy)
and CTC head, and prints CER side by side.

    .venv/bin/python bench/bench_weight_average.py models/quire-line-v1 --synthetic 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import pipeline.line_encoder  # noqa: F401  (registers the model type with transformers)
from pipeline.model_input import encoder_channels
from pipeline.training.checkpoint import TRAINING_WEIGHTS
from pipeline.training.preflight import CHECKPOINT
from pipeline.training.run_config import TrainConfig
from pipeline.training.validation import VAL_SEED, validate, validation_sets

BENCH_SEED = VAL_SEED + 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a model folder trained with --ema-decay")
    p.add_argument("--synthetic", type=int, default=1000, help="held-out synthetic lines")
    p.add_argument("--dev", type=Path, default=Path("../shared/data/dev"), help="real line folders")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    from safetensors.torch import load_model
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    training_file = args.model / CHECKPOINT / TRAINING_WEIGHTS
    if not training_file.exists():
        sys.exit(f"{training_file} not found: {args.model} was not trained with a weight average")
    torch.set_num_threads(args.threads)
    processor = AutoProcessor.from_pretrained(args.model)
    averaged = VisionEncoderDecoderModel.from_pretrained(args.model).float().eval()
    training = VisionEncoderDecoderModel.from_pretrained(args.model).float().eval()
    load_model(training, str(training_file), strict=True)
    channels = encoder_channels(averaged)

    lines = TrainConfig(
        out_dir=str(args.model),
        val_lines=args.synthetic,
        val_dir=str(args.dev) if args.dev.is_dir() else None,
    )
    sets = validation_sets(lines, processor, seed=BENCH_SEED)
    rows = {}
    for name, model in (("training weights", training), ("average", averaged)):
        rows[name] = validate(model, processor, sets, channels, "cpu", decoding="ctc")
    print(f"{'CER':<22}{'training weights':>18}{'average':>10}")
    for metric in sorted(rows["average"]):
        print(
            f"{metric:<22}{rows['training weights'][metric] * 100:>17.2f}%"
            f"{rows['average'][metric] * 100:>9.2f}%"
        )
    print(f"(CER, unfolded; cer_* is the decoder read greedily, ctc_cer_* the CTC head; "
          f"{args.synthetic} synthetic lines, seed {BENCH_SEED})")


if __name__ == "__main__":
    main()
