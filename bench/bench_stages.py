"""Where one read of a batch of lines spends its time, stage by stage, on a CPU or a GPU.

Usage: python bench/bench_stages.py [--device auto] [--lines 2048] [--batch-size 64]
       [--model quire-line-v1] [--repeat 3] [--language-model on|off]

On a GPU the model's share of a read is small and the host's work (fitting each crop, the CTC
beam search, stretching doubtful lines) sets the pace: each row prints ms per line and the lines
per second that stage alone would allow, so the stage that caps a reader shows as the smallest.
The stages are timed apart, each the fastest of --repeat after a warm-up, on held-out synthetic
lines cut to their ink (bench_throughput's lines). Recognition weighs the model's character
language model where its folder has one (the shipped model does): the search rows show its cost,
and the CTC read then searches with it instead of taking the best path. On the GPU machine (the `device` tool) run it
as bench_throughput's docstring says, carrying .train-assets.tar.xz and .whl.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_throughput import THROUGHPUT_SEED
from bench.bench_trim import synthetic_samples
from bench.timing import device_sync, fastest
from pipeline.model_input import fit_lines, model_batches


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="quire-line-v1")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--lines", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--language-model", default="on", choices=("on", "off"),
                   help="off: read as without the model's char_lm.npz (the search rows still show both)")
    args = p.parse_args()
    import torch

    from pipeline.recognize import Recognizer

    crops = [s.image for s in synthetic_samples(args.lines, 32, 1024, seed=THROUGHPUT_SEED)]
    reader = Recognizer(args.model, device=args.device, decode="rescore", batch_size=args.batch_size)
    fusion = reader.fusion  # the search rows time it whatever --language-model says
    if args.language_model == "off":
        reader.fusion = None
    sync = device_sync(reader.device)
    shape = reader.input
    print(f"{args.lines} held-out synthetic lines, model {args.model}, {reader.device}, "
          f"{'bf16' if reader.bf16 else 'fp32'}, batch {args.batch_size}, best of {args.repeat}, "
          f"language model {'on' if reader.fusion else 'off'}")
    print(f"{'stage':<48} {'ms/line':>8} {'lines/s':>9}")

    def report(name: str, seconds: float) -> None:
        print(f"{name:<48} {1000 * seconds / len(crops):>8.3f} {len(crops) / seconds:>9.0f}", flush=True)

    # Whole reads first: timed after the stages below, which keep their tensors, they ran a third
    # slower on the CPU.
    for decode in ("rescore", "ctc"):
        reader.decode = decode
        for retry in (reader.retry_below, 0.0):
            kept, reader.retry_below = reader.retry_below, retry
            seconds, _ = fastest(partial(reader.recognize, crops), args.repeat, sync)
            reader.retry_below = kept
            report(f"whole recognize, {decode}, re-read {'on' if retry else 'off'}", seconds)
    fitted = fit_lines(crops, shape)
    batches = [batch for _, batch in model_batches(fitted, shape, args.batch_size, reader.trim)]

    def pixels():
        return [reader._pixel_values(batch) for batch in batches]

    values = pixels()

    def run(fn):
        """`fn` as recognition runs it: no autograd, bf16 autocast where the reader uses it."""
        with torch.inference_mode(), torch.autocast(reader.device.split(":")[0], torch.bfloat16,
                                                    enabled=reader.bf16):
            return fn()

    from pipeline import recognize
    from pipeline.ctc_beam import ctc_readings

    proposed = run(lambda: [line for v in values for line in reader._propose(v)])
    # The decoder weighs the rivals of RESCORE_GROUP_LINES lines at a time, as recognition does.
    group = recognize.RESCORE_GROUP_LINES
    groups = [proposed[i : i + group] for i in range(0, len(proposed), group)]
    encoder = reader.model.encoder
    log_probs = run(lambda: [encoder.ctc_log_probs(encoder(pixel_values=v).last_hidden_state) for v in values])
    blank = encoder.config.ctc_blank_id
    skip = frozenset(reader.processor.tokenizer.all_special_ids) - {blank}

    def search(fusion):
        beam = recognize.LM_CANDIDATES if fusion else recognize.RESCORE_CANDIDATES
        return lambda: [ctc_readings(lp, blank, skip, beam=beam, fusion=fusion) for lp in log_probs]

    stages = [
        ("fit crops (whiten, cut, deslant, letterbox)", partial(fit_lines, crops, shape)),
        ("batches to tensors on the device", pixels),
        ("encoder", lambda: run(lambda: [reader.model.encoder(pixel_values=v) for v in values])),
        ("encoder + CTC beam search (rescore, 1st half)", lambda: run(lambda: [reader._propose(v) for v in values])),
        ("decoder scores the rivals (rescore, 2nd half)", lambda: run(lambda: [reader._pick(g) for g in groups])),
        ("CTC beam search alone, no language model", search(None)),
        ("CTC beam search alone, with the language model", search(fusion)),
        ("encoder + CTC read (decode ctc)", lambda: run(lambda: [reader._recognize_ctc(v) for v in values])),
    ]
    if fusion is None:  # a model without char_lm.npz: that row would repeat the one above
        stages.pop(-2)
    for name, stage in stages:
        report(name, fastest(stage, args.repeat, sync)[0])

if __name__ == "__main__":
    main()
