"""Fine-tune the shipped model on a collection it has never seen, as a user would, and measure it.

Usage: python bench/bench_finetune.py [--train-lines 400] [--test-lines 200] [--epochs 10]
       [--arms augment,plain,rehearse] [--rehearse 0.25,0.5] [--synthetic-lines 150] [--font gothicger]
       [--lr 5e-4] [--work /tmp/quire-bench-finetune] [--dev ../shared/data/dev]

A user's collection is stood in for by lines in a script the model never trained on: blackletter
(Fraktur by default) drawn along the strokes of a Hershey gothic font with a varying pen, lean and
baseline, then degraded as scans are. Lines to train on and lines to measure on come from
different seeds. Each arm runs the user's commands: `quire train --model quire-line-v1 --data
TRAIN --epochs E` (with --augment --rehearse 0, --no-augment --rehearse 0, or --augment --rehearse R
for each R), then
`quire eval` of the result on the collection's own lines and, for what the tuned model forgets, on
the dev sets and on held-out synthetic lines of each kind the shipped model learnt (seed
VAL_SEED + 8; the dev sets are small: 21, 20 and 6 lines), all with the default reading (rescore
with the language model, which the tuned model keeps). The shipped model reads
the same lines first, as the starting point.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.training.corpus import text_line
from pipeline.training.degrade import degrade
from pipeline.training.strokes import (
    HERSHEY_DIRS,
    drawable,
    hershey_file,
    parse_jhf,
    render_strokes,
)
from pipeline.training.validation import VAL_SEED

TRAIN_SEED = VAL_SEED + 5  # no other bench draws these seeds
TEST_SEED = VAL_SEED + 6
FORGET_SEED = VAL_SEED + 8  # bench_long_loops draws + 7
DEV_SETS = ("printed", "receipts", "handwritten")
SYNTHETIC_KINDS = ("printed", "receipt", "handwritten")
QUIRE = str(Path(sys.executable).with_name("quire"))


def write_collection(folder: Path, lines: int, font: str, seed: int) -> None:
    """`lines` blackletter lines as line.png + line.gt.txt, the layout `quire train` reads."""
    path = hershey_file(font)
    if path is None:
        sys.exit(f"{font}.jhf not found in {', '.join(HERSHEY_DIRS)}: apt-get install hershey-fonts-data")
    glyphs = parse_jhf(path.read_text(encoding="ascii", errors="replace"))
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(lines):
        text = drawable(text_line(rng, "printed", 60), glyphs) or "a"
        image = degrade(render_strokes(text, glyphs, rng.randint(24, 44), rng), np_rng, "printed")
        cv2.imwrite(str(folder / f"{i:05d}.png"), image)
        (folder / f"{i:05d}.gt.txt").write_text(text + "\n", encoding="utf-8")


def write_synthetic(folder: Path, lines: int, kind: str, seed: int) -> None:
    """Held-out synthetic lines of one kind, as the segmenter hands crops over, in the line layout."""
    from bench.bench_trim import synthetic_samples

    folder.mkdir(parents=True, exist_ok=True)
    for i, sample in enumerate(synthetic_samples(lines, 32, 1024, seed=seed, mix={kind: 1.0})):
        cv2.imwrite(str(folder / f"{i:05d}.png"), sample.image)
        (folder / f"{i:05d}.gt.txt").write_text(sample.text + "\n", encoding="utf-8")


def evaluate(model: str, folder: Path, report: Path, fold: bool = False) -> dict:
    command = [QUIRE, "eval", str(folder), "--model", model, "--json", str(report)]
    subprocess.run(command + (["--fold"] if fold else []), check=True, capture_output=True)
    return json.loads(report.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-lines", type=int, default=400)
    ap.add_argument("--test-lines", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--arms", default="augment,plain,rehearse",
                    help="augment (--augment --rehearse 0), plain (--no-augment --rehearse 0), "
                         "rehearse (--augment --rehearse R)")
    ap.add_argument("--rehearse", default="0.25,0.5", help="the rehearse arms' synthetic shares R")
    ap.add_argument("--synthetic-lines", type=int, default=150, help="held-out synthetic lines per kind")
    ap.add_argument("--font", default="gothicger", help="a Hershey font: gothicger, gothiceng, gothicita")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--work", type=Path, default=Path("/tmp/quire-bench-finetune"))
    ap.add_argument("--dev", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/dev")
    args = ap.parse_args()

    # Named by their size: a folder of 400 lines must not stand in for a run asking for 100.
    train_dir, test_dir = args.work / f"train-{args.train_lines}", args.work / f"test-{args.test_lines}"
    if not (train_dir / f"{args.train_lines - 1:05d}.png").exists():
        write_collection(train_dir, args.train_lines, args.font, TRAIN_SEED)
    if not (test_dir / f"{args.test_lines - 1:05d}.png").exists():
        write_collection(test_dir, args.test_lines, args.font, TEST_SEED)
    synthetic_dirs = {kind: args.work / f"synthetic-{kind}-{args.synthetic_lines}" for kind in SYNTHETIC_KINDS}
    for n, (kind, folder) in enumerate(synthetic_dirs.items()):
        if not (folder / f"{args.synthetic_lines - 1:05d}.png").exists():
            write_synthetic(folder, args.synthetic_lines, kind, FORGET_SEED + 1000 * n)
    print(f"{args.font}: {args.train_lines} lines to train on, {args.test_lines} to measure on; "
          f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}", flush=True)

    rows = []
    models = {"shipped": "quire-line-v1"}
    arm_flags = {"augment": ["--augment", "--rehearse", "0"], "plain": ["--no-augment", "--rehearse", "0"]}
    arm_flags.update({f"rehearse {share}": ["--augment", "--rehearse", share] for share in args.rehearse.split(",")})
    unknown = set(args.arms.split(",")) - {"augment", "plain", "rehearse"}
    if unknown:
        sys.exit(f"--arms: choose from augment, plain, rehearse, not {', '.join(sorted(unknown))}")
    arms = [name for arm in args.arms.split(",") for name in arm_flags if name.split()[0] == arm]
    for arm in arms:
        out = args.work / f"tuned-{arm.replace(' ', '')}-lr{args.lr:g}"
        command = [QUIRE, "train", "--model", "quire-line-v1", "--data", str(train_dir), "--out", str(out),
                   "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                   "--val-dir", str(test_dir), "--no-resume", "--num-workers", "1",
                   *arm_flags[arm]]
        start = time.monotonic()
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{arm}: quire train failed:\n{done.stderr[-2000:]}")
        minutes = (time.monotonic() - start) / 60
        history = json.loads((out / "checkpoint" / "history.json").read_text())
        per_epoch = [round(100 * h[f"cer_{test_dir.name}"], 2) for h in history]  # sets go by folder name
        synthetic = [round(100 * h["cer_synthetic"], 2) for h in history]
        print(f"{arm}: trained in {minutes:.1f} min; greedy CER before training, then by epoch: on the test "
              f"lines {per_epoch}, on training's synthetic validation lines {synthetic}", flush=True)
        models[f"{arm}, lr {args.lr:g}"] = str(out)
    for name, model in models.items():
        row = {"model": name}
        row["collection"] = evaluate(model, test_dir, args.work / f"{name}-test.json")["cer"]
        for dev in DEV_SETS:
            row[dev] = evaluate(model, args.dev / dev, args.work / f"{name}-{dev}.json", fold=dev == "receipts")["cer"]
        for kind, folder in synthetic_dirs.items():
            row[f"synthetic {kind}"] = evaluate(model, folder, args.work / f"{name}-synthetic-{kind}.json")["cer"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = ("collection", *DEV_SETS, *(f"synthetic {kind}" for kind in SYNTHETIC_KINDS))
    print(f"\n| model | {args.font} (held-out lines) | dev printed | dev receipts (folded) | dev hands "
          "| synthetic printed | synthetic receipts | synthetic hands |")
    print("|---|" + "---:|" * len(columns))
    for row in rows:
        print(f"| {row['model']} | " + " | ".join(f"{100 * row[k]:.2f} %" for k in columns) + " |")


if __name__ == "__main__":
    main()
