"""Pack what synthetic-line training reads from Debian packages (fonts, word list, prose) into one
folder (fortunes' book passages too), so training can run on a host without them (e.g. a GPU machine reached by copying files).

Usage: python bench/pack_training_assets.py [--out .train-assets] [--font-mb 20]
Then on the other host: QUIRE_TRAIN_ASSETS=.train-assets python -m pipeline.training.train ...
The folder is also written as one archive, OUT.tar.xz (under half its size), which is what the
device scripts carry and unpack (bench/device_assets.sh).
Handwriting fonts are always kept; the others are taken smallest first up to --font-mb. Fonts
over a megabyte (CJK fonts with a Latin hand, e.g. Klee One at 21 MB) are cut down to the code
points the generator uses, with fontTools (`pip install fonttools`, the `train` extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
from pathlib import Path

from pipeline.training.corpus import book_passages, dictionary_words, prose_lines
from pipeline.training.fonts import FONT_LIST, FontInfo, charset_spec, discover_fonts
from pipeline.training.strokes import ASSET_FOLDER, script_font_files

SUBSET_OVER = 1_000_000  # bytes


def copy_font(font: FontInfo, dest: Path) -> None:
    """Copy a font file; a large one keeps only the glyphs of the code points in its charset."""
    if os.path.getsize(font.path) <= SUBSET_OVER:
        shutil.copy(font.path, dest)
        return
    try:
        from fontTools import subset
    except ImportError as exc:
        raise SystemExit(f"{font.path} is large: pip install fonttools to cut it down") from exc
    options = subset.Options()
    options.layout_features = ["*"]  # keep kerning and joins: the hand should look the same
    loaded = subset.load_font(font.path, options)
    cutter = subset.Subsetter(options)
    cutter.populate(unicodes=sorted(font.charset))
    cutter.subset(loaded)
    subset.save_font(loaded, str(dest), options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".train-assets")
    parser.add_argument("--font-mb", type=float, default=20.0)
    args = parser.parse_args()
    if os.environ.get("QUIRE_TRAIN_ASSETS"):
        raise SystemExit("unset QUIRE_TRAIN_ASSETS: packing reads the installed fonts")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "fonts").mkdir(parents=True)
    (out / "prose").mkdir()
    fonts = sorted(discover_fonts(), key=lambda f: (f.kind != "handwriting", os.path.getsize(f.path)))
    budget, used, rows, kinds = args.font_mb * 1e6, 0, [], {}
    for font in fonts:
        size = os.path.getsize(font.path)
        if font.kind != "handwriting" and used + size > budget:
            continue
        name = f"{len(rows):03d}-{Path(font.path).name}"
        copy_font(font, out / "fonts" / name)
        size = (out / "fonts" / name).stat().st_size
        rows.append(f"fonts/{name}|{font.family}|{font.style}|{charset_spec(font.charset)}")
        used += size
        kinds[font.kind] = kinds.get(font.kind, 0) + 1
    (out / ASSET_FOLDER).mkdir()
    scripts = script_font_files()
    for path in scripts.values():
        shutil.copy(path, out / ASSET_FOLDER / path.name)
    kinds["script (hershey)"] = len(scripts)
    (out / FONT_LIST).write_text("\n".join(rows) + "\n", encoding="utf-8")
    (out / "words").write_text("\n".join(dictionary_words()) + "\n", encoding="utf-8")
    (out / "prose" / "prose.txt").write_text("\n".join(prose_lines()) + "\n", encoding="utf-8")
    (out / "books").mkdir()
    (out / "books" / "books.txt").write_text("\n%\n".join(book_passages()) + "\n", encoding="ascii")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    archive = out.with_name(out.name + ".tar.xz")
    with tarfile.open(archive, "w:xz") as tar:
        for item in sorted(out.iterdir()):
            tar.add(item, arcname=item.name)
    print(f"{out}: {len(rows)} fonts {kinds}, {total / 1e6:.1f} MB in all; "
          f"{archive}: {archive.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
