"""`quire search` over an archive's worth of lines: milliseconds per query, and the hits found.

    .venv/bin/python bench/bench_search.py --pages 10000 [--sqlite] [--url URL] [--repeat 5]

Fills a fresh database (SQLite in a temp folder with --sqlite; else PostgreSQL at --url, or a
cluster it starts the way bench_distributed.py does) with --pages pages of 40 lines: book prose
wrapped into lines, a word hyphenated at a line end now and then, and one page in five a
receipt (prices, dates, codes). Lines are saved as `quire run` saves them (repo.save_lines,
then the texts, which joins each page's run-on text), in one transaction per 100 pages. Then
times each query kind through pipeline.db.search.search_lines (the CLI's and the API's search):
a rare word, a common one, a phrase, a prefix, a price, a date, a hyphenated compound, and a word
a line break hyphenates. Prints the fastest of --repeat per query and how many hits it found.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import fastest

LINES = 40
WIDTH = 64  # characters a printed line holds
# (what it shows, the query). The words come from the fill (see `plant`), so every query has hits.
QUERIES = [
    ("rare word", "quizzical"),
    ("common word", "the"),
    ("phrase", '"of the"'),
    ("prefix", "pro*"),
    ("price", "12.50"),
    ("date", "2024-03-05"),
    ("hyphenated compound", "self-evident"),
    ("word cut by a line break", "archives"),
]


def wrap(words: list[str], rng: random.Random) -> list[str]:
    """Words set as lines of about WIDTH characters, a long word now and then hyphenated at the
    line end as a typesetter would ("archi-" / "ves")."""
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > WIDTH:
            room = WIDTH - len(line) - 2
            if word.isalpha() and word.islower() and len(word) >= 7 and room >= 3 and rng.random() < 0.3:
                cut = min(room, len(word) - 3)
                lines.append(f"{line} {word[:cut]}-")
                line = word[cut:]
                continue
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def page_texts(rng: random.Random, number: int) -> list[str]:
    from pipeline.training.corpus import book_text, receipt_line

    if number % 5 == 4:
        return [receipt_line(rng) for _ in range(LINES)]
    words: list[str] = []
    while len(wrap(words, rng)) <= LINES:
        words += book_text(rng, 400).split()
    return plant(wrap(words, rng)[:LINES], rng, number)


def plant(lines: list[str], rng: random.Random, number: int) -> list[str]:
    """A few of the queries' rarer forms, so each has hits at any size: one page in 50 carries a
    price, a date and a compound, one in 200 the rare word, one in 20 'archives' cut by a break."""
    if number % 50 == 0:
        lines[3] = "paid 12.50 on 2024-03-05, a self-evident sum"
    if number % 200 == 0:
        lines[5] += " quizzical"
    if number % 20 == 0:
        lines[7], lines[8] = lines[7] + " the archi-", "ves " + lines[8]
    if number % 100 == 0:  # the compound cut at its hyphen
        lines[10], lines[11] = lines[10] + " self-", "evident " + lines[11]
    return lines


def fill(url: str, pages: int, seed: int) -> int:
    """Documents of 10 pages, their lines saved and read; returns the lines saved."""
    from pipeline.db import repo
    from pipeline.db.session import make_engine, session_scope
    from pipeline.types import BBox

    rng = random.Random(seed)
    engine = make_engine(url)
    saved, started = 0, time.perf_counter()
    try:
        for first in range(0, pages, 100):
            with session_scope(engine) as s:
                for number in range(first, min(pages, first + 100)):
                    if number % 10 == 0:
                        doc, _ = repo.upsert_document(
                            s, sha256=hashlib.sha256(f"{seed}-{number}".encode()).hexdigest(),
                            profile="bench", name=f"box/{number // 10}.pdf",
                            source_uri=f"file:///box/{number // 10}.pdf", size_bytes=1)
                    texts = page_texts(rng, number)
                    page = repo.save_page(s, doc.id, number=number % 10 + 1, image_key=f"p{number}",
                                          width=1200, height=1800, dpi=150, angle=0.0)
                    lines = repo.save_lines(s, page.id, [
                        (i, BBox(100, 40 + 40 * i, 1100, 70 + 40 * i), None) for i in range(len(texts))])
                    repo.set_line_texts(s, [(line.id, t, 0.95) for line, t in zip(lines, texts)],
                                        model="bench")
                    saved += len(texts)
                    if number % 10 == 9 or number == pages - 1:
                        repo.finish_document(s, doc.id, number % 10 + 1)
            print(f"\r  filled {min(pages, first + 100):,} pages ({saved:,} lines) in "
                  f"{time.perf_counter() - started:.0f} s", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        with engine.connect() as conn:  # the planner's statistics, as a database in use has them
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    finally:
        engine.dispose()
    return saved


def stored_mb(url: str) -> float:
    """What the lines and their search take on disk: PostgreSQL's `lines` with its indexes (the
    words columns included); SQLite's whole file (lines, FTS tables), vacuumed."""
    from pipeline.db.session import make_engine

    if url.startswith("sqlite:///"):
        import sqlite3

        path = url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("VACUUM")  # outside a transaction, which the project's engine opens
        return Path(path).stat().st_size / 1e6
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT pg_total_relation_size('lines')").scalar() / 1e6
    finally:
        engine.dispose()


def measure(url: str, repeat: int) -> None:
    from pipeline.db.search import search_lines
    from pipeline.db.session import make_engine, session_scope

    engine = make_engine(url)
    try:
        print(f"{'query':<26} {'typed':<16} {'ms':>8} {'hits':>5} {'run on':>6}  first hit")
        for what, query in QUERIES:
            def run(q: str = query) -> list:
                with session_scope(engine) as s:
                    return search_lines(s, q, limit=20)

            seconds, hits = fastest(run, repeat)
            first = hits[0].highlighted() if hits else ""
            if hits and hits[0].runs_on:
                first += " / " + hits[0].runs_on.highlighted()
            print(f"{what:<26} {query:<16} {seconds * 1000:8.1f} {len(hits):5d} "
                  f"{sum(h.runs_on is not None for h in hits):6d}  {first[:70]}")
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=10000, help="pages of 40 lines (default 10000)")
    ap.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    ap.add_argument("--url", help="a PostgreSQL server URL (a fresh database is made on it)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from bench.bench_many_files import fresh_database
    from pipeline.db.session import upgrade

    with tempfile.TemporaryDirectory(prefix="quire-search-") as tmp:
        server, stop = args.url, None
        if not args.sqlite and not server:
            from bench.bench_distributed import start_postgres

            started = start_postgres(Path(tmp))
            if started is None:
                raise SystemExit("PostgreSQL is not installed (or use --sqlite)")
            stop, server = started
        try:
            url = f"sqlite:///{tmp}/search.sqlite" if args.sqlite else fresh_database(server)
            upgrade(url)
            lines = fill(url, args.pages, args.seed)
            backend = "sqlite" if args.sqlite else "postgresql"
            print(f"{backend}: {args.pages:,} pages, {lines:,} lines, {stored_mb(url):.0f} MB "
                  f"({'lines, its indexes and FTS tables' if args.sqlite else 'lines and its indexes'})"
                  f"; fastest of {args.repeat}, 20 hits at most")
            measure(url, args.repeat)
        finally:
            if stop:
                subprocess.run(stop, capture_output=True, check=False)


if __name__ == "__main__":
    main()
