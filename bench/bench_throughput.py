"""Recognition throughput by device, precision, batch size and decoding, on held-out synthetic lines.

Usage: python bench/bench_throughput.py [--device auto] [--lines 2048] [--batch-sizes 32,128]
       [--decode rescore,ctc] [--precision auto] [--model quire-line-v1] [--repeat 2]

Made for a GPU host (how fast the default `rescore` reads there, bf16 against fp32, and which
batch size fills the card); on a CPU it prints the same table. Each row reads the lines once to
warm up, then --repeat times, and keeps the fastest; it prints lines/s, the CER over all lines
(which must not move with the batch size or much with the precision) and, on a GPU, the peak memory.

The lines come from seed VAL_SEED + 4, which neither training nor the other benches draw, cut to
their ink as a segmenter hands them over.

On the GPU machine (the `device` tool): rendering the lines needs the training fonts, and reading
needs pydantic-settings, which its image lacks. Here, once: `.venv/bin/python
bench/pack_training_assets.py` and `bash bench/device_wheels.sh`; there, `bash
bench/device_checks.sh` runs this bench with the GPU tests and bench_stages.py (carry
[".train-assets.tar.xz", ".whl"]).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_trim import synthetic_samples
from bench.timing import fastest
from pipeline.config import DECODINGS
from pipeline.precision import PRECISIONS
from pipeline.training.evaluate import cer
from pipeline.training.validation import VAL_SEED

THROUGHPUT_SEED = VAL_SEED + 4  # bench_weight_average + 1, bench_trim + 2, bench_retry + 3 and + 5, bench_long_loops + 7


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="quire-line-v1")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--lines", type=int, default=2048)
    p.add_argument("--batch-sizes", default="32,128")
    p.add_argument("--decode", default="rescore,ctc", help=f"comma-separated, from {', '.join(DECODINGS)}")
    p.add_argument("--precision", default="auto", help=f"comma-separated, from {', '.join(PRECISIONS)}")
    p.add_argument("--repeat", type=int, default=2, help="timed reads after the warm-up; the fastest is kept")
    args = p.parse_args()
    decodings, precisions = args.decode.split(","), args.precision.split(",")
    if unknown := [d for d in decodings if d not in DECODINGS] + [q for q in precisions if q not in PRECISIONS]:
        p.error(f"unknown decoding or precision: {', '.join(unknown)}")
    import torch

    from pipeline.recognize import Recognizer

    samples = synthetic_samples(args.lines, 32, 1024, seed=THROUGHPUT_SEED)
    crops, refs = [s.image for s in samples], [s.text for s in samples]
    print(f"{args.lines} held-out synthetic lines (seed {THROUGHPUT_SEED}), model {args.model}")
    print(f"{'device':<6} {'prec':>4} {'decode':<9} {'batch':>5} {'lines/s':>9} {'CER':>7} {'peak MB':>8}", flush=True)
    for precision in precisions:
        for decode in decodings:
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                reader = Recognizer(args.model, device=args.device, decode=decode, precision=precision,
                                    batch_size=batch_size)
                on_gpu = reader.device.startswith("cuda")
                reader.recognize(crops)  # warm-up: kernels, caches, compile
                if on_gpu:
                    torch.cuda.reset_peak_memory_stats()
                # The texts are on the host when recognize returns: no sync needed.
                seconds, read = fastest(partial(reader.recognize, crops), args.repeat, warm_up=False)
                hyps = [r.text for r in read]
                peak = f"{torch.cuda.max_memory_allocated() / 2**20:>8.0f}" if on_gpu else f"{'-':>8}"
                print(f"{reader.device:<6} {'bf16' if reader.bf16 else 'fp32':>4} {reader.decode:<9} {batch_size:>5} "
                      f"{len(crops) / seconds:>9.1f} {cer(refs, hyps):>7.2%} {peak}", flush=True)
                del reader
                if on_gpu:
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
