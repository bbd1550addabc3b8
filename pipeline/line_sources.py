"""Which source each line-pair name in a `quire lines` folder belongs to (OUT/sources.tsv).

Line pairs are named after their input's file name (`0001_p0001_l003`). An archive cut box by box
has a 0001.pdf in every box, and a pair already there is kept, never overwritten: without a record
of whose lines those are, box 2's lines would be skipped as "already there". The record lets a
rerun of the same file find its own names again, and gives a different file another name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.process import file_sha256

SOURCES_INDEX = "sources.tsv"


def source_key(path: Path, transcription: bool) -> str:
    """What makes an input the same source on a later run: a document's bytes; a transcription's
    place (its text is corrected over time, and is still the same pages)."""
    if not transcription:
        try:
            return f"sha256:{file_sha256(path)}"
        except OSError:
            pass  # unreadable: it fails, named, when its lines are cut
    return f"file:{path.resolve().as_posix()}"


def claim_names(out: Path, wanted: Mapping[Path, str], keys: Mapping[Path, str]) -> dict[Path, str]:
    """Each input's name in `out`: the one an earlier run gave the same source; else the wanted
    name, or wanted-2, -3... while another source holds it. The claims are added to the record.
    A name with pairs on disk from before the record existed goes to its first claimant."""
    index = out / SOURCES_INDEX
    holder: dict[str, str] = {}  # name: source key
    if index.exists():
        for row in index.read_text(encoding="utf-8").splitlines()[1:]:
            name, key, _ = (row.split("\t", 2) + ["", ""])[:3]
            if name and key:
                holder.setdefault(name, key)
    named = {key: name for name, key in holder.items()}
    given: dict[Path, str] = {}
    added: list[str] = []
    for path, base in wanted.items():
        key = keys[path]
        if key not in named:
            name, n = base, 1
            while name in holder:
                n += 1
                name = f"{base}-{n}"
            holder[name], named[key] = key, name
            added.append("\t".join(" ".join(str(v).split()) for v in (name, key, path)))
        given[path] = named[key]
    if added:
        out.mkdir(parents=True, exist_ok=True)
        fresh = not index.exists()
        with index.open("a", encoding="utf-8") as fh:
            fh.write(("name\tsource\tfirst seen as\n" if fresh else "") + "\n".join(added) + "\n")
    return given
