"""Resident memory of a recognizer reading many lines of every width on a CPU: it must level off.

Usage: python bench/bench_recognize_memory.py [--calls 80] [--lines 160] [--decode auto]
           [--arms before,after] [--rounds 1]

Each arm runs in a process of its own, one after the other (`--rounds` repeats the sequence, so
timings of the arms interleave): the shipped recognizer (`after`), and the same with oneDNN's
default kernel cache and no heap trimming (`before`); `cache=N` gives the shipped code a kernel
cache of N, `notrim` leaves its heap untrimmed, and `+` joins them (`cache=1024+notrim` is
`before`). Every call reads `--lines` new printed lines, 2-12 words at 30-70 px, so batches take
many shapes, as a long run's do. Prints RSS after loading and every tenth call, the peak, and
lines per second over all calls but the first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

FONTS = ("DejaVuSerif.ttf", "DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf")
WORDS = ('archive', 'ledger', 'parish', '1873', 'Oct.', 'receipt', 'no.', '42', 'total', '£3.10s',
         'John', 'Smith,', 'the', 'and', 'of', 'to', 'in', 'was', 'for', 'letter', 'dated', 'Mr.',
         'Mrs.', 'received', 'account', 'paid', '17.50', 'KG-0093', 'Hamburg.')


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def draw_line(rng: random.Random):
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(f"/usr/share/fonts/truetype/dejavu/{rng.choice(FONTS)}", rng.randint(30, 70))
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
    _, _, right, bottom = font.getbbox(text)
    image = Image.new("L", (right + 20, bottom + 16), 255)
    ImageDraw.Draw(image).text((10, 8), text, font=font, fill=0)
    return np.asarray(image)


def child(arm: str, calls: int, lines: int, decode: str) -> None:
    """One arm in this process: prints a JSON record of its RSS and speed."""
    parts = set(("cache=1024+notrim" if arm == "before" else arm).split("+"))  # 1024: oneDNN's own
    for part in parts:
        if part.startswith("cache="):
            os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = part.split("=", 1)[1]
    from pipeline import recognize
    from pipeline.config import load_settings

    if "notrim" in parts:
        recognize.release_free_memory = lambda: None
    recognizer = recognize.Recognizer.from_settings(load_settings(), decode=decode)
    rng = random.Random(0)  # every arm reads the same lines
    record = {"arm": arm, "loaded": rss_mb(), "rss": [], "seconds": []}
    for _ in range(calls):
        crops = [draw_line(rng) for _ in range(lines)]
        started = time.perf_counter()
        recognizer.recognize(crops)
        record["seconds"].append(time.perf_counter() - started)
        record["rss"].append(rss_mb())
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=80)
    parser.add_argument("--lines", type=int, default=160, help="lines per recognize call")
    parser.add_argument("--decode", default="auto")
    parser.add_argument("--arms", default="before,after")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls, args.lines, args.decode)
        return
    arms = args.arms.split(",")
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for _ in range(args.rounds):
        for arm in arms:
            out = subprocess.run(
                [sys.executable, __file__, "--child", arm, "--calls", str(args.calls),
                 "--lines", str(args.lines), "--decode", args.decode],
                check=True, capture_output=True, text=True).stdout
            results[arm].append(json.loads(out.strip().splitlines()[-1]))
    marks = sorted({0, *range(9, args.calls, 10), args.calls - 1})
    print(f"RSS MB after each call of {args.lines} lines (decode {args.decode}; first round)")
    print(f"{'lines read':>10} " + " ".join(f"{arm:>12}" for arm in arms))
    print(f"{'loaded':>10} " + " ".join(f"{results[arm][0]['loaded']:>12.0f}" for arm in arms))
    for i in marks:
        print(f"{(i + 1) * args.lines:>10} " + " ".join(f"{results[arm][0]['rss'][i]:>12.0f}" for arm in arms))
    print(f"{'peak':>10} " + " ".join(f"{max(results[arm][0]['rss']):>12.0f}" for arm in arms))
    print("lines/s over calls 2.. (each round)")
    for arm in arms:
        speeds = [args.lines * (args.calls - 1) / sum(r["seconds"][1:]) for r in results[arm]]
        print(f"{arm:>12} " + " ".join(f"{s:8.1f}" for s in speeds))


if __name__ == "__main__":
    main()
