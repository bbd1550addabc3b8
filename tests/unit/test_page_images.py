"""Page images kept as small as they can be without losing what the source had."""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image
from sqlalchemy import select

from pipeline.config import Settings
from pipeline.db.models import Page
from pipeline.db.session import make_engine, session_scope
from pipeline.exporters import parse_formats
from pipeline.page_images import encode_page, lossy_allowed, source_is_lossy
from pipeline.runner import LocalRunner
from pipeline.types import LineText
from tests.model_fixtures import make_letter_page
from tests.pagegen import make_pdf

DPI = 150


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L" if image.mode in ("1", "L") else "RGB"))


def scanned_colour(page: np.ndarray, seed: int = 0) -> np.ndarray:
    """The page as a colour scan shows it: cream paper, dark blue-black ink, sensor noise."""
    ink = page[..., None] / 255.0
    rgb = ink * np.array([232, 226, 210]) + (1 - ink) * np.array([40, 35, 60])
    rgb += np.random.default_rng(seed).normal(0, 3, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_a_black_and_white_page_is_a_1_bit_png_of_the_same_pixels():
    page = make_letter_page(DPI)
    bilevel = np.where(page < 128, 0, 255).astype(np.uint8)
    kept = encode_page(bilevel, lossy=True)  # nothing to lose even where lossy is allowed
    assert kept.extension == "png" and kept.media_type == "image/png"
    with Image.open(io.BytesIO(kept.data)) as image:
        assert image.mode == "1"
    assert np.array_equal(decoded(kept.data), bilevel)
    grey_png = encode_page(np.where(bilevel == 0, 1, 255).astype(np.uint8), lossy=False)
    assert len(kept.data) * 2 < len(grey_png.data)


def test_a_continuous_tone_page_is_a_jpeg_only_where_lossy_is_allowed():
    colour = scanned_colour(make_letter_page(DPI))
    whole = encode_page(colour, lossy=False)
    assert whole.extension == "png" and np.array_equal(decoded(whole.data), colour)
    small = encode_page(colour, lossy=True)
    assert small.extension == "jpg" and small.media_type == "image/jpeg"
    assert len(small.data) * 4 < len(whole.data)
    difference = np.abs(decoded(small.data).astype(int) - colour.astype(int))
    assert difference.mean() < 3  # the noise, a little smoothed; the writing is where it was


def test_a_page_too_long_for_jpeg_stays_png():
    strip = np.random.default_rng(0).integers(0, 256, (8, 70_000), dtype=np.uint8)
    kept = encode_page(strip, lossy=True)
    assert kept.extension == "png" and np.array_equal(decoded(kept.data), strip)


def write_image(image: np.ndarray, path: Path, mode: str | None = None, **options) -> Path:
    written = Image.fromarray(image)
    (written.convert(mode) if mode else written).save(path, **options)
    return path


def test_which_sources_count_as_lossy(tmp_path):
    page = scanned_colour(make_letter_page(50))
    lossy = [
        make_pdf([page], tmp_path / "scan.pdf", dpi=50),
        write_image(page, tmp_path / "photo.jpg", quality=80),
        write_image(page, tmp_path / "photo.webp", quality=80),
        write_image(page, tmp_path / "jpeg-in.tif", compression="jpeg"),
    ]
    lossless = [
        write_image(page, tmp_path / "scan.png"),
        write_image(page, tmp_path / "lzw.tif", compression="tiff_lzw"),
        write_image(page, tmp_path / "lossless.webp", lossless=True),
        write_image(page, tmp_path / "scan.bmp"),
        tmp_path / "empty.tif",
    ]
    (tmp_path / "empty.tif").write_bytes(b"II*\x00")  # cut short: counted lossless, never an error here
    assert [source_is_lossy(p) for p in lossy] == [True] * len(lossy)
    assert [source_is_lossy(p) for p in lossless] == [False] * len(lossless)
    assert not source_is_lossy(tmp_path / "gone.jpg")  # rendering says it is missing, not this
    assert [lossy_allowed(mode, lossy[1]) for mode in ("auto", "lossless", "compact")] == [True, False, True]
    assert [lossy_allowed(mode, lossless[0]) for mode in ("auto", "lossless", "compact")] == [False, False, True]


def huge_tiff(path: Path, side: int = 200_000) -> Path:
    """A TIFF header claiming side x side pixels (no pixels): past Pillow's own bomb limit."""
    tags = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 8 + 2 + 12 * 8 + 4), (278, 4, side), (279, 4, side)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", tag, kind, 1, value)
                                                  for tag, kind, value in tags)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(16))
    return path


class Reader:
    def recognize(self, crops):
        return [LineText("a line", 0.9) for _ in crops]


def run(tmp_path: Path, sources: list[Path], mode: str = "auto") -> dict[str, tuple[str, bytes]]:
    """Each source's stored page image (key, bytes) after `quire run` with the searchable PDF."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'q.sqlite'}",
                        storage_url=(tmp_path / "store").as_uri(),
                        render={"dpi": DPI, "page_images": mode})
    summary = LocalRunner(settings, exporters=parse_formats("txt,pdf"), out_dir=tmp_path / "out",
                          recognizer_factory=Reader).run(sources)
    assert summary.count("done") == len(sources), summary.outcomes
    engine = make_engine(settings.database_url)
    with session_scope(engine) as s:
        keys = {page.document.name: page.image_key for page in s.scalars(select(Page))}
    return {Path(name).name: (key, (tmp_path / "store" / key).read_bytes()) for name, key in keys.items()}


pdftoppm = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils missing")


@pdftoppm
def test_a_run_keeps_each_source_s_pages_as_well_as_the_source_had_them(tmp_path):
    letter = make_letter_page(DPI)
    colour = scanned_colour(letter)
    sources = [write_image(colour, tmp_path / "photo.jpg", quality=92, dpi=(DPI, DPI)),
               write_image(colour, tmp_path / "master.png", dpi=(DPI, DPI)),
               write_image(np.where(letter < 128, 0, 255).astype(np.uint8), tmp_path / "fax.tif",
                           mode="1", compression="group4", dpi=(DPI, DPI))]
    turned = tmp_path / "turned.jpg"  # as a phone stores a photo taken sideways
    exif = Image.Exif()
    exif[0x0112] = 6
    write_image(np.ascontiguousarray(np.rot90(colour)), turned, quality=92, dpi=(DPI, DPI), exif=exif)
    pages = run(tmp_path, [*sources, turned])
    assert pages["photo.jpg"][0].endswith("/pages/0001.jpg")
    assert pages["photo.jpg"][1] == sources[0].read_bytes()  # the photo itself, as it came
    turned_key, turned_page = pages["turned.jpg"]  # shown upright: a page image of its own
    assert turned_key.endswith(".jpg") and turned_page != turned.read_bytes()
    assert decoded(turned_page).shape == colour.shape
    assert pages["master.png"][0].endswith("/pages/0001.png")
    assert np.array_equal(decoded(pages["master.png"][1]), colour)  # the master, pixel for pixel
    fax_key, fax_page = pages["fax.tif"]
    assert fax_key.endswith(".png") and Image.open(io.BytesIO(fax_page)).mode == "1"
    # The searchable PDFs are made of these images, carried over as they are.
    with pikepdf.open(tmp_path / "out" / "photo.ocr.pdf") as pdf:
        [(_, image)] = pdf.pages[0].get_images().items()
        assert image.Filter == pikepdf.Name.DCTDecode and image.read_raw_bytes() == pages["photo.jpg"][1]
    with pikepdf.open(tmp_path / "out" / "fax.ocr.pdf") as pdf:
        [(_, image)] = pdf.pages[0].get_images().items()
        assert int(image.BitsPerComponent) == 1
        assert np.array_equal(np.asarray(pikepdf.PdfImage(image).as_pil_image().convert("L")),
                              decoded(fax_page))


def test_a_huge_tiff_header_fails_on_the_pixel_limit_not_on_the_page_image_s_look(tmp_path):
    """Deciding how to keep its pages opened the TIFF and met Pillow's bomb error first: the
    document failed as an "unexpected error" instead of naming the limit it exceeds."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'q.sqlite'}",
                        storage_url=(tmp_path / "store").as_uri())
    summary = LocalRunner(settings, exporters=parse_formats("txt"),
                          recognizer_factory=Reader).run([huge_tiff(tmp_path / "map.tif")])
    [outcome] = summary.outcomes
    assert outcome.status == "failed" and "image is too large" in outcome.error, outcome.error
    assert "QUIRE_RENDER__MAX_PIXELS" in outcome.error and "unexpected" not in outcome.error


@pdftoppm
def test_lossless_keeps_a_jpeg_as_it_came_or_else_as_png(tmp_path):
    colour = scanned_colour(make_letter_page(DPI))
    photo = write_image(colour, tmp_path / "photo.jpg", dpi=(DPI, DPI))
    exif = Image.Exif()
    exif[0x0112] = 8  # turned a quarter the other way
    turned = write_image(np.ascontiguousarray(np.rot90(colour, -1)), tmp_path / "turned.jpg",
                         dpi=(DPI, DPI), exif=exif)
    pages = run(tmp_path, [photo, turned], mode="lossless")
    assert pages["photo.jpg"][1] == photo.read_bytes()
    key, data = pages["turned.jpg"]
    upright = np.asarray(Image.open(turned).transpose(Image.Transpose.ROTATE_90))
    assert key.endswith(".png") and np.array_equal(decoded(data), upright)
