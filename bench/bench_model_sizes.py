"""What each `quire train --size` costs to read and to train, before anyone spends hours on it.

Usage: python bench/bench_model_sizes.py [--sizes small,base] [--device auto] [--threads 2]
       [--batch-size 32] [--precision auto] [--repeat 5]

For each size it builds the model (random weights: the costs below do not depend on them) and
times, on the real dev lines (../shared/data/dev: printed, receipts, hands; each fitted as
recognition fits crops, at that model's height):
  - encode: the encoder over the lines (what `--decode ctc` costs, with the CTC head);
  - decoder pass: one teacher-forced decoder pass over the lines' text (what the default
    `rescore` pays per reading it weighs, about three per line);
  - train: a forward and backward pass and an optimizer step on a batch (lines/s).
Each figure is the fastest of --repeat runs after a warm-up. Parameters and the size saved in bf16
(what a shipped model weighs; the limit is 50 MB) come first.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import device_sync, fastest

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"


def dev_lines() -> tuple[list, list[str]]:
    from pipeline.training.evaluate import load_pairs, read_gray

    kinds = [load_pairs(DEV / kind) for kind in ("printed", "receipts", "handwritten")]
    # Taken in turn from each kind, so a batch smaller than the 47 lines still holds hands.
    pairs = [pair for group in itertools.zip_longest(*kinds) for pair in group if pair]
    return [read_gray(image) for image, _ in pairs], [text for _, text in pairs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="small,base")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="auto", help="auto, bf16 or fp32 (as recognition takes it)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    import torch

    from pipeline.precision import use_bf16
    from pipeline.recognize import pick_device

    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    bf16 = use_bf16(args.precision, device)
    autocast = (
        (lambda: torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16))
        if bf16 else contextlib.nullcontext
    )
    crops, texts = dev_lines()
    n = min(args.batch_size, len(crops))
    crops, texts = crops[:n], texts[:n]
    print(f"{n} dev lines per batch, {device}, {'bf16 autocast' if bf16 else 'fp32'}, {args.threads} threads")
    print(f"{'size':6} {'params':>8} {'bf16 MB':>8} {'input':>8} {'encode ms/line':>15} "
          f"{'decoder pass ms/line':>21} {'train lines/s':>14}")
    for size in args.sizes.split(","):
        params, height, width, encode_s, decode_s, train_s = measure(size, crops, texts, device, autocast, args.repeat)
        print(f"{size:6} {params / 1e6:7.1f}M {params * 2 / 1e6:8.1f} {height:>5}x{width:<4}"
              f"{1000 * encode_s / n:13.2f} {1000 * decode_s / n:21.2f} {n / train_s:14.1f}", flush=True)


def measure(size: str, crops: list, texts: list[str], device: str, autocast, repeat: int) -> tuple:
    """(parameters, input height, width, encode s, decoder pass s, train step s) for one batch."""
    import torch

    from pipeline.model_input import fit_lines, input_shape, pixel_values
    from pipeline.training.model import LineModelConfig, build_line_model, count_parameters

    sync = device_sync(device)
    model, processor = build_line_model(LineModelConfig.preset(size))
    model.to(device)
    shape = input_shape(processor.image_processor, 1)
    # Cut past the widest line's ink, as recognition cuts its batches.
    pv = pixel_values(fit_lines(crops, shape), shape, processor, trim=True).to(device)
    labels = processor.tokenizer(texts, padding=True, return_tensors="pt").input_ids
    labels[labels == processor.tokenizer.pad_token_id] = -100
    labels = labels.to(device)

    model.eval()
    with torch.inference_mode(), autocast():
        encoded = model.encoder(pixel_values=pv)
        encode_s, _ = fastest(lambda: model.encoder(pixel_values=pv), repeat, sync)
        decode_s, _ = fastest(lambda: model(encoder_outputs=encoded, labels=labels), repeat, sync)

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        with autocast():
            loss = model(pixel_values=pv, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train_s, _ = fastest(step, repeat, sync)
    return count_parameters(model), shape.height, shape.width, encode_s, decode_s, train_s

if __name__ == "__main__":
    main()
