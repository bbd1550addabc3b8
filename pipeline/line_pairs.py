"""Line pairs to fine-tune and measure on: line.png + line.gt.txt, the layout `quire train` and
`quire eval` read (ocropy, tesstrain), cut from documents or from PAGE XML/ALTO transcriptions.

From documents, the lines are cut by Quire's own segmenter, exactly as recognition will see them,
and each .gt.txt starts as the model's draft reading for a person to correct. From a
transcription, each line is cut from its page image along the file's polygon, with the file's text.
A .gt.txt that already exists is never overwritten: it may hold hours of corrections.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from pipeline.config import RenderOptions
from pipeline.document_checks import DOCUMENT_SUFFIXES
from pipeline.errors import BadInputError
from pipeline.ground_truth import TranscribedPage
from pipeline.inputs import visible_files
from pipeline.orientation import segmented
from pipeline.render import count_pages, render_page, render_pages
from pipeline.segment import to_gray
from pipeline.types import LineText

TRANSCRIPTION_SUFFIXES = {".xml", ".zip"}  # .zip: PAGE files, one per page (`--format page`)
DRAFTS_INDEX = "drafts.tsv"  # written beside the pairs: load_pairs reads only images and .gt.txt
# Pixels around a line polygon kept when the rest of its box is whitened: polygons are often drawn
# tight, and a stroke's anti-aliased edge must not be cut.
POLYGON_MARGIN = 2


@dataclass
class LinePair:
    name: str  # file stem in the output folder
    image: np.ndarray = field(repr=False)  # gray uint8
    text: str | None  # None: not transcribed, the model's draft goes in
    former: str | None = None  # the name an earlier version gave it: a pair there is this line


@dataclass
class Written:
    """What a run wrote: new pairs, pairs already there (kept as they were), lines without text."""

    new: int = 0
    kept: int = 0
    untranscribed: int = 0
    drafts: dict[str, tuple[float, str]] = field(default_factory=dict)  # name: (confidence, text)


def document_lines(path: Path, stem: str, options: RenderOptions,
                   page_done: Callable[[], object] = lambda: None) -> Iterator[LinePair]:
    """Every line Quire's segmenter finds in a document, page by page, in reading order."""
    for page in render_pages(path, options):
        _, seg, _ = segmented(page, rotate=options.rotate_pages)
        for line, crop in zip(seg.lines, seg.crops):
            yield LinePair(f"{stem}_p{page.number:04d}_l{line.order + 1:03d}", crop, None)
        page_done()


def transcribed_lines(pages: Sequence[TranscribedPage], stem: str, options: RenderOptions,
                      images: Path | None = None, written: Written | None = None,
                      page_done: Callable[[], object] = lambda: None) -> Iterator[LinePair]:
    """The transcribed lines of a PAGE XML or ALTO file's pages (`read_transcription`), cut from
    the page images they name."""
    for page in pages:
        image = find_page_image(page, images)
        number = page_in_image(image, page)
        rendered = render_page(image, number, options)
        gray = to_gray(rendered.image)
        height, width = gray.shape
        # Coordinates are in the file's pixels (or ALTO's mm10/inch1200); the image found may
        # have been rendered or scaled differently, so they are mapped through the sizes the file gives.
        if page.width and page.height:
            sx, sy = width / page.width, height / page.height
        elif page.units_per_inch:
            sx = sy = rendered.dpi / page.units_per_inch
        else:
            sx = sy = 1.0
        prefix = f"{stem}_p{number:04d}" if len(pages) > 1 else stem
        # Named by place as well as id, zero-padded: file order is reading order (ids such as
        # tl_2 and tl_10 sort the wrong way round), and the id still finds the line in its file.
        width = max(3, len(str(len(page.lines))))
        for place, line in enumerate(page.lines, 1):
            if not line.text:
                if written is not None:
                    written.untranscribed += 1
                continue
            crop = cut_polygon(gray, [(x * sx, y * sy) for x, y in line.polygon])
            if crop is not None:
                yield LinePair(f"{prefix}_l{place:0{width}d}_{_safe(line.id)}", crop, line.text,
                               former=f"{prefix}_{_safe(line.id)}")
        page_done()


def page_in_image(image: Path, page: TranscribedPage) -> int:
    """The page of `image` that `page` is drawn on. ALTO's PHYSICAL_IMG_NR numbers a page among
    its document's scans: it picks a page of a file that holds them (a PDF or multi-page TIFF,
    as Quire's own ALTO of a PDF names it), but the scan of one page is that page whatever its
    number, and a number past the file's pages falls back to the page's place in the ALTO file."""
    if page.physical is None or page.physical == page.number:
        return page.number
    pages = count_pages(image)
    return page.physical if 1 < pages and page.physical <= pages else page.number


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "line"


def find_page_image(page: TranscribedPage, images: Path | None = None) -> Path:
    """The image file a transcription names. Looked for in `images`, beside the file and one folder
    up (Transkribus puts its XML in page/ under the images); a file that names none is matched by
    its stem."""
    reference = page.image.replace("\\", "/")
    folders = [f for f in (images, page.source.parent, page.source.parent.parent) if f is not None]
    candidates: list[Path] = []
    if reference:
        if Path(reference).is_absolute():
            candidates.append(Path(reference))
        for folder in folders:
            candidates += [folder / reference, folder / PurePosixPath(reference).name]
    else:
        stem = page.source.name.split(".")[0]
        candidates += [folder / f"{stem}{suffix}" for folder in folders for suffix in sorted(DOCUMENT_SUFFIXES)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = ", ".join(dict.fromkeys(str(f) for f in folders))
    named = f"its page image {reference!r}" if reference else "no page image, and none with its name"
    raise BadInputError(f"{named} is not found in {where}; give the image folder with --images",
                        source=str(page.source))


def cut_polygon(gray: np.ndarray, polygon: Sequence[tuple[float, float]]) -> np.ndarray | None:
    """The polygon's bounding box from the page, whitened outside the polygon (plus a margin);
    None when it holds less than 2x2 pixels of the page."""
    if len(polygon) < 2:
        return None
    points = np.asarray(polygon, dtype=np.float64)
    height, width = gray.shape
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    crop = gray[y0:y1, x0:x1].copy()
    if len(polygon) > 2:
        mask: np.ndarray = np.zeros(crop.shape, dtype=np.uint8)
        cv2.fillPoly(mask, [np.round(points - (x0, y0)).astype(np.int32)], 1)
        size = 2 * POLYGON_MARGIN + 1
        mask = cv2.dilate(mask, np.ones((size, size), np.uint8))
        crop[mask == 0] = 255
    return crop


def sample_lines(lines: Iterable[LinePair], count: int, seed: int) -> list[LinePair]:
    """`count` lines drawn at random from the whole stream, every line as likely (reservoir
    sampling), in stream order: a few hundred lines from a large collection show all its hands,
    not just its first pages."""
    rng = random.Random(seed)
    kept: list[tuple[int, LinePair]] = []
    for index, line in enumerate(lines):
        if len(kept) < count:
            kept.append((index, line))
        else:
            slot = rng.randrange(index + 1)
            if slot < count:
                kept[slot] = (index, line)
    return [line for _, line in sorted(kept, key=lambda item: item[0])]


def write_pairs(lines: Iterable[LinePair], out: Path, draft: Callable[[list[np.ndarray]], list[LineText]] | None,
                written: Written, batch: int = 64, drafted: Callable[[int], object] | None = None) -> None:
    """Write each line as NAME.png + NAME.gt.txt under `out`. Lines without text get `draft`'s
    reading (or an empty .gt.txt to fill in, without one), noted in `written.drafts`. A name whose
    .gt.txt exists (under its former name too) is left as it is, image and text, so a rerun never
    undoes corrections nor cuts a line twice.
    `drafted(n)` is told of every line handled (a progress bar's update)."""
    out.mkdir(parents=True, exist_ok=True)
    waiting: list[LinePair] = []

    def flush() -> None:
        if not waiting:
            return
        readings = draft([line.image for line in waiting]) if draft else [LineText("", 0.0)] * len(waiting)
        for line, reading in zip(waiting, readings):
            _write(out, line.name, line.image, reading.text)
            if draft:
                written.drafts[line.name] = (reading.confidence, reading.text)
        if drafted is not None:
            drafted(len(waiting))
        waiting.clear()

    for line in lines:
        if any((out / f"{name}.gt.txt").exists() for name in (line.name, line.former) if name):
            written.kept += 1  # cut before, perhaps under its former name: never cut twice
        elif line.text is not None:
            written.new += 1
            _write(out, line.name, line.image, line.text)
        else:
            written.new += 1
            waiting.append(line)  # counted in `drafted` once its batch is read
            if len(waiting) >= batch:
                flush()
            continue
        if drafted is not None:
            drafted(1)
    flush()


def write_draft_index(out: Path, drafts: dict[str, tuple[float, str]]) -> Path:
    """OUT/DRAFTS_INDEX: every drafted line still in `out` and still as drafted (a corrected or
    emptied .gt.txt is done with) with its confidence, least sure first, so the lines most likely
    wrong are corrected first. Lines drafted by earlier runs stay listed."""
    index = out / DRAFTS_INDEX
    rows: dict[str, tuple[float, str]] = {}
    if index.exists():
        for row in index.read_text(encoding="utf-8").splitlines()[1:]:
            confidence, name, text = (row.split("\t", 2) + ["", ""])[:3]
            try:
                rows[name] = (float(confidence), text)
            except ValueError:
                continue  # a row the user edited into something else
    rows.update(drafts)
    lines = [f"{confidence:.4f}\t{name}\t{text.replace(chr(9), ' ')}" for name, (confidence, text)
             in sorted(rows.items(), key=lambda item: (item[1][0], item[0])) if _as_drafted(out, name, text)]
    index.write_text("\n".join(["confidence\tline\tdraft", *lines]) + "\n", encoding="utf-8")
    return index


def _as_drafted(out: Path, name: str, draft: str) -> bool:
    gt = out / f"{name}.gt.txt"
    if not (out / f"{name}.png").exists() or not gt.exists():
        return False
    try:
        return gt.read_text(encoding="utf-8").strip() == draft.replace("\t", " ").strip()
    except (OSError, UnicodeDecodeError):
        return False


def _write(out: Path, name: str, image: np.ndarray, text: str) -> None:
    if not cv2.imwrite(str(out / f"{name}.png"), image):
        raise OSError(f"{out / name}.png: cannot be written")
    # The text last: a pair counts as done only once its .gt.txt is there.
    (out / f"{name}.gt.txt").write_text(text + "\n", encoding="utf-8")


@dataclass
class Inputs:
    """`quire lines`' inputs sorted out by `split_inputs`."""

    documents: list[Path]  # cut by the segmenter, with drafts
    transcriptions: list[Path]  # PAGE XML, ALTO, zips of PAGE files
    passed_over: list[Path]  # other XML in a folder (METS, Dublin Core, manifests)
    scans: list[Path]  # the images and PDFs of folders that hold transcriptions: their page images


def split_inputs(paths: Sequence[Path]) -> Inputs:
    """Files named count by their suffix; a folder gives its PAGE/ALTO files if it has any (its
    images are then their page images), else its PDFs and images. Other XML in a folder (METS,
    Dublin Core, manifests) is passed over."""
    from pipeline.ground_truth import looks_like_transcription

    inputs = Inputs([], [], [], [])
    for path in paths:
        if not path.is_dir():
            named = inputs.transcriptions if path.suffix.lower() in TRANSCRIPTION_SUFFIXES else inputs.documents
            named.append(path)
            continue
        found = sorted(visible_files(path))
        read = {p: looks_like_transcription(p) for p in found if p.suffix.lower() in TRANSCRIPTION_SUFFIXES}
        inputs.passed_over += [p for p, transcribed in read.items() if not transcribed]
        xml = [p for p, transcribed in read.items() if transcribed]
        images = [p for p in found if p.suffix.lower() in DOCUMENT_SUFFIXES]
        if xml:
            inputs.transcriptions += xml
            inputs.scans += images
        else:
            inputs.documents += images
    inputs.documents = list(dict.fromkeys(inputs.documents))
    inputs.transcriptions = list(dict.fromkeys(inputs.transcriptions))
    inputs.scans = list(dict.fromkeys(inputs.scans))
    return inputs


def untranscribed_scans(scans: Sequence[Path], pages: Iterable[TranscribedPage], images: Path | None) -> list[Path]:
    """The `scans` no page of `pages` is drawn on: in a folder of transcriptions only the images
    they name are cut, so a scan left untranscribed would be passed over without a word."""
    named: set[Path] = set()
    for page in pages:
        try:
            named.add(find_page_image(page, images).resolve())
        except BadInputError:
            continue  # reported when its lines are cut
    return [scan for scan in scans if scan.resolve() not in named]

