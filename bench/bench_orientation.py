"""How often `segment_upright` finds the quarter turn that sets a page upright, and what it costs.

Usage: python bench/bench_orientation.py [--dev ../shared/data/dev] [--pages 3] [--trials 3000]
       [--whole] [--line-images]

1. Pages: generated pages (tests/pagegen: one column, two columns, a picture; plain and scanned),
   the dev PDFs' pages and the sample letter, and pages stacked from synthetic printed, receipt
   and hand lines; each is turned 0, 90, 180 and 270 degrees and the turn found is printed with
   its evidence (parts voting along / across, lines voting upright / upside down) and the
   seconds `segment_upright` took (segmentation included; "read a/b": the judge's mean confidence
   as it was / turned over, where it was asked), then its time on the upright page
   against `segment_page` alone. A turned page left upside down is marked so (no more readable
   than it came); a wrong turn (an upright page turned, a page left on its side) is marked '!'.
2. Lines: each line of the dev line folders and of 600 synthetic lines per kind votes (upright,
   upside down, or neither); pages of 5-30 lines drawn from them at random show how often the
   votes alone (no judge) would turn an upright page over (false) and find an upside-down one.
3. With --whole: the dev brochure linn turned with `qpdf --rotate=+N` (poppler renders it turned)
   is read by the local runner with the shipped model, pages turned upright and not, and the
   text scored by bag-of-words F1 against linn.gt.txt (bench_pages' measure).
4. With --line-images: each dev line image given as a page of its own (what `quire run` does with
   a folder of line crops), as it is and upside down. One short line is the least a page can
   hold: the ink votes are one or none and the judge reads a single line. Prints the images set
   wrong, with their evidence, and the count per set.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import pagegen

from bench.bench_trim import synthetic_samples
from pipeline.config import RenderOptions
from pipeline.orientation import MIN_VOTES, line_vote, segment_upright, turn
from pipeline.render import render_pages
from pipeline.segment import segment_page, to_gray
from pipeline.training.evaluate import load_pairs, read_gray
from pipeline.training.validation import VAL_SEED

ORIENT_SEED = VAL_SEED + 10  # bench_hand_gap draws + 9
KINDS = ("printed", "receipt", "handwritten")


def stacked_page(kind: str, seed: int, lines: int = 18) -> np.ndarray:
    """Synthetic lines of one kind set one under another at 1.5 line spacing on white."""
    samples = synthetic_samples(lines, 64, 1024, seed=seed, mix={kind: 1.0})
    height = sum(s.image.shape[0] for s in samples) * 3 // 2 + 200
    width = max(s.image.shape[1] for s in samples) + 200
    page = np.full((height, width), 255, np.uint8)
    y = 100
    for s in samples:
        h, w = s.image.shape
        page[y:y + h, 100:100 + w] = np.minimum(page[y:y + h, 100:100 + w], s.image)
        y += h * 3 // 2
    return page


def test_pages(dev: Path, stacks: int) -> list[tuple[str, np.ndarray, int]]:
    pages = []
    for kind in pagegen.KINDS:
        for seed in range(2):
            page = pagegen.make_page(kind, seed=seed, scan=seed == 1, angle=2.0 * seed)
            pages.append((f"generated {kind} {'scan' if seed else 'clean'}", to_gray(page.image), 300))
    pdfs = sorted((dev / "pdfs").glob("*.pdf")) if (dev / "pdfs").is_dir() else []
    for pdf in [*pdfs, ROOT / "samples" / "sample-letter.pdf"]:
        for page in render_pages(pdf, RenderOptions(dpi=300)):
            pages.append((f"{pdf.stem[:24]} p{page.number}", to_gray(page.image), page.dpi))
    for pdf in pdfs:  # as poppler renders them (anti-aliased), as a PDF page with /Rotate is
        for page in render_pages(pdf, RenderOptions(dpi=300, embedded_scans=False)):
            pages.append((f"{pdf.stem[:16]} p{page.number} poppler", to_gray(page.image), page.dpi))
    for kind in KINDS:
        for i in range(stacks):
            pages.append((f"stacked {kind} {i + 1}", stacked_page(kind, ORIENT_SEED + i), 300))
    return pages


def line_sets(dev: Path) -> dict[str, list[np.ndarray]]:
    sets = {}
    for folder in ("printed", "receipts", "handwritten"):
        pairs = load_pairs(dev / folder) if (dev / folder).is_dir() else []
        if pairs:
            sets[f"dev {folder}"] = [read_gray(path) for path, _ in pairs]
    for kind in KINDS:
        samples = synthetic_samples(600, 48, 1024, seed=ORIENT_SEED + 100, mix={kind: 1.0})
        sets[f"synthetic {kind}"] = [s.image for s in samples]
    return sets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev", type=Path, default=Path("../shared/data/dev"))
    p.add_argument("--pages", type=int, default=3, help="stacked synthetic pages per kind")
    p.add_argument("--trials", type=int, default=3000, help="random pages per size in part 2")
    p.add_argument("--whole", action="store_true", help="part 3: linn read whole at four turns")
    p.add_argument("--line-images", action="store_true", help="part 4: dev line images as pages")
    args = p.parse_args()

    print("1. pages turned t degrees: t -> turn found (parts along/across, lines up/down) seconds")
    right = total = wrong = upside_down = judged_pages = 0
    segment_upright(turn(stacked_page("printed", ORIENT_SEED), 180), dpi=300)  # loads the judge's model
    seconds: list[float] = []
    plain: list[float] = []
    for name, gray, dpi in test_pages(args.dev, args.pages):
        cells = []
        for t in (0, 90, 180, 270):
            started = time.perf_counter()
            found = segment_upright(turn(gray, -t), dpi=dpi).orientation
            seconds.append(time.perf_counter() - started)
            total += 1
            right += found.rotation == t
            # A turned page left upside down is no more readable than it came; an upright
            # page turned, or any page left on its side, is a wrong turn.
            off = (found.rotation - t) % 360
            upside_down += off == 180 and t != 0
            wrong += off != 0 and not (off == 180 and t != 0)
            mark = "" if off == 0 else " (upside down)" if off == 180 and t else " !"
            judged = (f" read {found.read_as_is:.2f}/{found.read_turned:.2f}"
                      if found.read_as_is is not None else "")
            judged_pages += found.read_as_is is not None
            cells.append(f"{t:3d}->{found.rotation:3d}{mark} ({found.along}/{found.across}, "
                         f"{found.upright}/{found.upside_down}{judged}) {seconds[-1]:.2f}s")
        started = time.perf_counter()
        segment_page(gray, dpi=dpi)
        plain.append(time.perf_counter() - started)
        print(f"  {name:30s} " + " | ".join(cells), flush=True)
    upright = np.array(seconds[0::4])
    print(f"  {right}/{total} turns found, {upside_down} turned pages left upside down, {wrong} wrong "
          f"turns; the judge read {judged_pages} of them; segment_upright took a median "
          f"{np.median(seconds):.3f}s per page (segmentation included); on the upright pages "
          f"{np.median(upright):.3f}s against {np.median(plain):.3f}s for segment_page alone "
          f"(median ratio {np.median(upright / np.array(plain)):.2f})\n")

    print(f"2. line votes, and pages of n random lines: an upright page is turned over when >= {MIN_VOTES} "
          "lines vote upside down and twice the upright ones ('false'); the same page upside down "
          "is found so ('found'); on its side it goes the way most lines vote ('sideways': the "
          "share set upright, a tie counting half)")
    rng = np.random.default_rng(ORIENT_SEED)
    for name, lines in line_sets(args.dev).items():
        votes = np.array([line_vote(line) for line in lines])
        cells = []
        for n in (5, 8, 15, 30):
            false = found = sideways = 0.0
            for _ in range(args.trials):
                pick = votes[rng.integers(0, len(votes), n)]
                up, down = int(np.sum(pick == 1)), int(np.sum(pick == -1))
                false += down >= MIN_VOTES and down >= 2 * up
                found += up >= MIN_VOTES and up >= 2 * down  # the same page upside down
                sideways += 1.0 if up > down else 0.5 if up == down else 0.0
            cells.append(f"n={n}: false {false / args.trials:.3f} found {found / args.trials:.2f} "
                         f"sideways {sideways / args.trials:.2f}")
        print(f"  {name:22s} {len(votes):4d} lines: upright {np.mean(votes == 1):.2f}, "
              f"upside down {np.mean(votes == -1):.2f} | " + "  ".join(cells), flush=True)
    if args.whole:
        print()
        whole_documents(args.dev)
    if args.line_images:
        print()
        line_images(args.dev)


def line_images(dev: Path) -> None:
    """Part 4: every dev line image as a page, as it is and turned over."""
    print("4. dev line images as pages, given upright (0) and upside down (180): those set wrong")
    for folder in ("printed", "receipts", "handwritten"):
        pairs = load_pairs(dev / folder) if (dev / folder).is_dir() else []
        right = {0: 0, 180: 0}
        for path, _ in pairs:
            gray = read_gray(path)
            for t in (0, 180):
                up = segment_upright(turn(gray, t), dpi=300)
                found = up.orientation
                right[t] += found.rotation == t
                if found.rotation != t:
                    judged = (f", read {found.read_as_is:.2f}/{found.read_turned:.2f}"
                              if found.read_as_is is not None else "")
                    print(f"  {folder}/{path.name} given {t} -> turned {found.rotation} "
                          f"({len(up.segmentation.lines)} lines, votes {found.upright}/{found.upside_down}{judged})")
        print(f"  {folder}: {len(pairs)} images, set upright as given upright {right[0]}, "
              f"as given upside down {right[180]}", flush=True)


def whole_documents(dev: Path) -> None:
    import shutil
    import subprocess
    import tempfile

    from bench.bench_pages import bag_of_words
    from pipeline.config import Settings
    from pipeline.exporters import parse_formats
    from pipeline.recognize import Recognizer
    from pipeline.runner import LocalRunner

    source = dev / "pdfs" / "ocrmypdf_linn.pdf"
    if not source.is_file() or shutil.which("qpdf") is None:
        print("3. skipped: needs qpdf and", source)
        return
    truth = source.with_suffix(".gt.txt").read_text(encoding="utf-8")
    reader = Recognizer("quire-line-v1", device="cpu")
    print("3. linn turned with qpdf --rotate=+N, read by quire run: word F1 against linn.gt.txt")
    with tempfile.TemporaryDirectory() as tmp:
        for turned_by in (0, 90, 180, 270):
            pdf = Path(tmp) / f"linn-{turned_by}.pdf"
            subprocess.run(["qpdf", str(source), f"--rotate=+{turned_by}", str(pdf)], check=True)
            for rotate in (True, False):
                home = Path(tmp) / f"home-{turned_by}-{rotate}"
                settings = Settings(home=home, device="cpu", render={"dpi": 300, "rotate_pages": rotate})
                runner = LocalRunner(settings, exporters=parse_formats("txt"), out_dir=home / "out",
                                     recognizer_factory=lambda: reader)
                summary = runner.run([pdf])
                text = (home / "out" / f"{pdf.stem}.txt").read_text(encoding="utf-8")
                print(f"  +{turned_by:3d}  pages turned upright: {'yes' if rotate else 'no ':3s}  "
                      f"lines {summary.lines:4d}  F1 {bag_of_words(truth, text)[2]:.3f}", flush=True)


if __name__ == "__main__":
    main()
