"""CER/WER after ground-truth normalisation, and evaluation of a recognizer on a folder of line images."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import BadInputError
from pipeline.line_image import looks_like_a_page

# Typographic quotes and dashes map to the ASCII a keyboard (and most ground truth) uses.
# UW3 ground truth writes an opening double quote as two backticks and a closing one as ''.
_QUOTES = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "`": "'",
    "´": "'",
    "′": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "‟": '"',
    "″": '"',
    "«": '"',
    "»": '"',
}
_DOUBLED = (("''", '"'), ("``", '"'))


def normalize(text: str, fold: bool = False) -> str:
    """NFC, straight quotes, collapsed whitespace; `fold` also drops case and all spaces."""
    text = unicodedata.normalize("NFC", text)
    for pair, repl in _DOUBLED:
        text = text.replace(pair, repl)
    text = "".join(_QUOTES.get(c, c) for c in text)
    text = " ".join(text.split())
    if fold:
        text = text.casefold().replace(" ", "")
    return text


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (chars or words)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def cer(refs: Sequence[str], hyps: Sequence[str], fold: bool = False) -> float:
    """Character error rate: total edits / total reference chars, after normalisation."""
    edits = chars = 0
    for r, h in zip(refs, hyps, strict=True):
        r, h = normalize(r, fold), normalize(h, fold)
        edits += edit_distance(r, h)
        chars += len(r)
    return edits / max(1, chars)


def wer(refs: Sequence[str], hyps: Sequence[str], fold: bool = False) -> float:
    """Word error rate on whitespace-split words (case-folded when `fold`)."""
    edits = words = 0
    for r, h in zip(refs, hyps, strict=True):
        rw, hw = normalize(r).split(), normalize(h).split()
        if fold:
            rw, hw = [w.casefold() for w in rw], [w.casefold() for w in hw]
        edits += edit_distance(rw, hw)
        words += len(rw)
    return edits / max(1, words)


@dataclass
class LineResult:
    """One evaluated line."""

    name: str
    reference: str
    hypothesis: str
    cer: float
    confidence: float | None = None


@dataclass
class EvalReport:
    """Scores of a recognizer on one folder."""

    directory: str
    lines: int
    cer: float
    wer: float
    fold: bool
    seconds: float
    lines_per_second: float
    worst: list[LineResult] = field(default_factory=list)
    # CER of the most confident lines, e.g. {"90%": 0.01}: how well confidence flags bad lines.
    cer_by_confidence: dict[str, float] = field(default_factory=dict)
    # "name: reason" for each image that could not be read; those lines are not scored.
    unreadable: list[str] = field(default_factory=list)
    # "name (WxH)" for each image that looks like a page or a block of lines: read (and scored)
    # as one line, squeezed to the model's line height, which is seldom what was meant.
    pages: list[str] = field(default_factory=list)
    # Every scored line in name order, so two models' reports can be compared line by line.
    every_line: list[LineResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The images `quire run` and `quire recognize` read (document_checks.IMAGE_SUFFIXES, not
# imported: training runs where the render stage's libraries may be missing; a test keeps the two
# the same).
LINE_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif",
                       ".jp2", ".j2k", ".jpx", ".jpf", ".j2c", ".jpc", ".pnm", ".pbm", ".pgm",
                       ".ppm", ".heic", ".heif", ".avif")


def load_pairs(directory: str | Path) -> list[tuple[Path, str]]:
    """(image path, ground truth) for every *.png/*.jpg/*.tif with a *.gt.txt next to it; an
    empty .gt.txt is a line not transcribed yet (`quire lines --no-draft`), and left out, as is
    an image without one (`left_out` counts both). A .gt.txt that is not UTF-8 is an error
    naming it."""
    return transcribed(line_images(directory))


def transcribed(found: list[tuple[Path, str | None]]) -> list[tuple[Path, str]]:
    """The (image, ground truth) pairs of `line_images` that have a transcription."""
    return [(img, text) for img, text in found if text]


def line_folders(directory: str | Path) -> list[Path]:
    """The folder itself if it holds line pairs, else its subfolders that do (one level down, by
    name): `quire eval dev/` over dev/printed, dev/receipts, ..."""
    root = Path(directory)
    if load_pairs(root):
        return [root]
    found = [sub for sub in sorted(root.iterdir()) if sub.is_dir() and not sub.name.startswith(".")
             and load_pairs(sub)]
    if not found:
        raise FileNotFoundError(f"{root}: no line images with .gt.txt ground truth, here or in "
                                "its subfolders")
    return found


def left_out(found: list[tuple[Path, str | None]]) -> dict[str, int]:
    """How many line images of `line_images` `load_pairs` leaves out, by why (`left_out_lines`)."""
    return {why: len(paths) for why, paths in left_out_lines(found).items()}


def left_out_lines(found: list[tuple[Path, str | None]]) -> dict[str, list[Path]]:
    """Line images of `line_images` that `load_pairs` leaves out, by why: without a .gt.txt, or
    with an empty one."""
    lines: dict[str, list[Path]] = {"without a .gt.txt": [], "with an empty .gt.txt": []}
    for path, text in found:
        if text is None:
            lines["without a .gt.txt"].append(path)
        elif not text:
            lines["with an empty .gt.txt"].append(path)
    return {k: v for k, v in lines.items() if v}


def some_of(names: Sequence[str], shown: int = 10) -> str:
    """The first `shown` names and how many more: one message names a whole folder's problems
    without running to thousands of names."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def transcriptions_without_image(directory: str | Path) -> list[Path]:
    """The .gt.txt files of a folder with no line image of their name beside them (an image
    renamed, deleted or of a kind not read), which are passed over."""
    root = Path(directory)
    images = {p.name[: -len(p.suffix)] for p in root.iterdir() if p.suffix.lower() in LINE_IMAGE_SUFFIXES}
    return sorted(gt for gt in root.glob("*.gt.txt") if gt.name[: -len(".gt.txt")] not in images)


def line_images(directory: str | Path) -> list[tuple[Path, str | None]]:
    """Every line image in the folder, by name, with its ground truth: None without a .gt.txt."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    found: list[tuple[Path, str | None]] = []
    undecodable: list[tuple[Path, UnicodeDecodeError]] = []
    for img in sorted(root.iterdir()):
        if img.suffix.lower() not in LINE_IMAGE_SUFFIXES:
            continue
        gt = img.with_name(img.name[: -len(img.suffix)] + ".gt.txt")
        if not gt.exists():
            found.append((img, None))
            continue
        try:
            # utf-8-sig: Windows editors (Notepad) start a file with a byte-order mark, which
            # would count as a character in CER and be trained on as an unknown one.
            found.append((img, ground_truth(gt.read_text(encoding="utf-8-sig"))))
        except UnicodeDecodeError as exc:
            undecodable.append((gt, exc))  # all named at once: not one fix and rerun per file
    if len(undecodable) == 1:
        gt, error = undecodable[0]
        raise BadInputError(f"not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8",
                            source=str(gt))
    if undecodable:
        named = some_of([f"{gt.name} ({exc.reason} at byte {exc.start})" for gt, exc in undecodable])
        raise BadInputError(f"{len(undecodable)} .gt.txt files are not UTF-8 text: {named}; save "
                            "them as UTF-8", source=str(root))
    return found


def ground_truth(text: str) -> str:
    """A .gt.txt's text as trained on and scored: NFC, as `normalize` scores it (an editor that
    saves 'é' as 'e' + U+0301 would otherwise have the line left out of training for a
    combining accent the model has no letter for), and its whitespace (CRLF, tabs, a line
    wrapped in two) one space, as kraken's ketos reads ground truth."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def read_gray(path: Path) -> np.ndarray:
    """A line image as 2-D uint8."""
    from PIL import Image

    from pipeline import heif

    if path.suffix.lower() in heif.HEIF_SUFFIXES:
        heif.enable()
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def read_line_images(paths: Sequence[Path]) -> tuple[list[int], list[np.ndarray], list[tuple[Path, str]]]:
    """(indices of the readable `paths`, their gray images, (path, reason) for each that is not)."""
    kept: list[int] = []
    images: list[np.ndarray] = []
    failed: list[tuple[Path, str]] = []
    for i, path in enumerate(paths):
        try:
            images.append(read_gray(path))
            kept.append(i)
        except FileNotFoundError:
            failed.append((path, "no such file"))
        except (OSError, ValueError) as exc:
            if path.suffix.lower() == ".pdf":  # a document, not a line: say where it goes
                failed.append((path, "a PDF, not a line image: `quire run` reads whole documents"))
                continue  # PIL's UnidentifiedImageError is an OSError
            failed.append((path, unreadable_reason(path, exc)))
    return kept, images, failed


def unreadable_reason(path: Path, exc: Exception) -> str:
    """Why Pillow could not read a line image, in words: its exception's class name
    (UnidentifiedImageError, OSError) tells a user nothing."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, PermissionError):
        return "cannot be opened: permission denied"
    if isinstance(exc, UnidentifiedImageError):
        empty = path.stat().st_size == 0 if path.exists() else False
        return "file is empty" if empty else "not an image Pillow can read (damaged, or in a format it does not know)"
    reason = " ".join(str(exc).split())
    if "truncated" in reason.lower():  # Pillow: "image file is truncated (...)", "Truncated File Read"
        return "cut short: the image data ends early (copy the file again)"
    return f"damaged: {reason}" if reason else "damaged"


COVERAGES = (0.5, 0.8, 0.9)


def cer_by_confidence(
    refs: Sequence[str], hyps: Sequence[str], confidences: Sequence[float], fold: bool = False
) -> dict[str, float]:
    """CER over the top 50/80/90% of lines ranked by confidence (a useful score lowers it)."""
    ranked = sorted(range(len(refs)), key=lambda i: -confidences[i])
    out: dict[str, float] = {}
    for coverage in COVERAGES:
        keep = ranked[: max(1, round(coverage * len(ranked)))]
        out[f"{coverage:.0%}"] = cer([refs[i] for i in keep], [hyps[i] for i in keep], fold)
    return out


def evaluate_dir(
    directory: str | Path,
    recognizer_fn: Callable[[list[np.ndarray]], Sequence[str | tuple[str, float]]],
    *,
    fold: bool = False,
    batch_size: int = 32,
    n_worst: int = 10,
    progress: Any = None,
    pairs: list[tuple[Path, str]] | None = None,
) -> EvalReport:
    """Run `recognizer_fn` over a folder of line images and score it.

    The function turns gray crops into texts, or into (text, confidence) pairs; with
    confidences the report also says how the CER falls when only confident lines are kept.
    Images are read `batch_size` at a time (memory stays flat on big folders) and the time
    counted is the recognizer's alone; `progress` is a tqdm-like bar over lines, or None.
    """
    pairs = load_pairs(directory) if pairs is None else pairs  # `pairs`: the folder's, read already
    if not pairs:
        raise FileNotFoundError(f"{directory}: no line images with .gt.txt ground truth")
    scored: list[tuple[Path, str]] = []
    unreadable: list[str] = []
    pages: list[str] = []
    outputs: list[str | tuple[str, float]] = []
    seconds = 0.0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        kept, images, failed = read_line_images([path for path, _ in chunk])
        scored.extend(chunk[k] for k in kept)
        unreadable.extend(f"{path.name}: {reason}" for path, reason in failed)
        pages.extend(f"{chunk[k][0].name} ({image.shape[1]}x{image.shape[0]})"
                     for k, image in zip(kept, images) if looks_like_a_page(image))
        start = time.perf_counter()
        outputs.extend(recognizer_fn(images) if images else [])
        seconds += time.perf_counter() - start
        if progress is not None:
            progress.update(len(chunk))
    if not scored:
        raise FileNotFoundError(f"{directory}: none of its {len(pairs)} line images could be read")
    refs = [t for _, t in scored]
    hyps = [o if isinstance(o, str) else o[0] for o in outputs]
    confidences = [None if isinstance(o, str) else float(o[1]) for o in outputs]
    per_line = [
        LineResult(p.name, r, h, cer([r], [h], fold), c)
        for (p, _), r, h, c in zip(scored, refs, hyps, confidences, strict=True)
    ]
    known = [c for c in confidences if c is not None]
    # Only lines read wrong: a short list says the rest were read right, where 0 % lines padded it.
    worst = sorted((line for line in per_line if line.cer > 0), key=lambda x: x.cer, reverse=True)[:n_worst]
    return EvalReport(
        directory=str(directory),
        lines=len(scored),
        cer=cer(refs, hyps, fold),
        wer=wer(refs, hyps, fold),
        fold=fold,
        seconds=seconds,
        lines_per_second=len(scored) / max(seconds, 1e-9),
        worst=worst,
        cer_by_confidence=cer_by_confidence(refs, hyps, known, fold)
        if len(known) == len(hyps)
        else {},
        unreadable=unreadable,
        pages=pages,
        every_line=per_line,
    )
