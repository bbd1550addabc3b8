"""Fine-tune or train a VisionEncoderDecoder line model on synthetic lines or a folder of *.png + *.gt.txt; resumable."""

from __future__ import annotations

import argparse
import json

from pipeline.precision import PRECISIONS
from pipeline.training.loop import train
from pipeline.training.run_config import DECODING_CHOICES, TrainConfig

# The `python -m pipeline.training.train` entry point: the docstring above is --help's description;
# the run itself is loop.train.


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    from pipeline.training.model import MODEL_SIZES

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, dest="out_dir")
    p.add_argument("--model", default="new")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--size", default="small", choices=tuple(MODEL_SIZES))
    for name, typ in (
        ("steps", int),
        ("epochs", int),
        ("batch-size", int),
        ("lr", float),
        ("warmup", int),
        ("val-every", int),
        ("log-every", int),
        ("val-lines", int),
        ("save-every-s", float),
        ("num-workers", int),
        ("threads", int),
        ("seed", int),
        ("curriculum-lines", int),
        ("ctc-weight", float),
        ("ema-decay", float),
        ("ctc-frames", int),
        ("ink-cut", float),
    ):
        p.add_argument(
            f"--{name}", type=typ, default=getattr(TrainConfig, name.replace("-", "_"), None)
        )
    p.add_argument("--val-dir", default=None)
    p.add_argument("--mix", default=None)
    p.add_argument("--decoding", default="measure", choices=DECODING_CHOICES)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--freeze-encoder", action="store_true")
    p.add_argument("--hold-out", dest="held_out", type=float, default=TrainConfig.held_out)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--rehearse", type=float, default=TrainConfig.rehearse)
    p.add_argument("--no-resume", dest="resume", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return TrainConfig(**vars(p.parse_args(argv)))


if __name__ == "__main__":
    print(json.dumps(train(parse_args())), flush=True)
