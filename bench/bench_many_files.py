"""Many small files through `quire run`: the cost per document of a first run and of a rerun over
the same files (all done already), with recognition stood in for so the driver's own overhead
shows.

    PYTHONPATH=. .venv/bin/python bench/bench_many_files.py --sizes 500,2000,8000 [--kind png|pdf]
        [--format txt,json] [--postgres | --url URL] [--sql]

For each N it writes N one-page inputs of their own bytes (a 600x140 image of two short lines,
as PNG or as a one-page PDF) into a temporary folder, then runs `quire run FOLDER --out OUT` twice
in a fresh QUIRE_HOME (SQLite, or PostgreSQL with --postgres/--url), each in a process of its own,
in-process through the CLI with the progress bar on (written to a file) and a stand-in recognizer
that answers at once (no model is loaded; pages are not turned, --no-rotate-pages, as that reads
lines with the model). Prints per run: seconds to the first file reached and to the first page
on the bar, the whole command's milliseconds per document, SQL statements per document, peak RSS,
the summary's lines on stdout and the bar's last page count. --sql adds the statements that took
the most time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_inputs(folder: Path, n: int, kind: str) -> None:
    """N one-page documents, each of its own bytes, in boxes of 500 (as an archive's folders)."""
    import numpy as np
    from PIL import Image

    from tests.model_fixtures import render_line

    for i in range(n):
        page = np.full((140, 600), 255, np.uint8)
        for row, text in enumerate((f"Box {i // 500} folio {i}", "a letter from the archive")):
            line = render_line(text, 40)[:, :580]
            page[20 + 60 * row:60 + 60 * row, 10:10 + line.shape[1]] = line
        box = folder / f"box{i // 500:03d}"
        box.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(page)
        if kind == "pdf":
            image.convert("RGB").save(box / f"{i:06d}.pdf", "PDF", resolution=150.0)
        else:
            image.save(box / f"{i:06d}.png")


class FastReader:
    """Stands in for the model: every line reads the same at once."""

    def recognize(self, crops):
        from pipeline.types import LineText

        return [LineText("a letter from the archive", 0.99) for _ in crops]


def child(args: argparse.Namespace) -> None:
    """One `quire run` in this process, measured; prints a JSON line."""
    import tqdm as tqdm_module
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from pipeline import runner as runner_module

    started = time.perf_counter()
    marks: dict[str, float] = {}
    bar_n: list[int] = [0]
    statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    clock: dict[int, float] = {}

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        clock[id(cursor)] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        # The columns selected left out: the table and the WHERE clause tell statements apart.
        key = re.sub(r"^SELECT .*? FROM", "SELECT ... FROM", re.sub(r"\s+", " ", statement).strip())[:120]
        entry = statements[key]
        entry[0] += 1
        entry[1] += time.perf_counter() - clock.pop(id(cursor), time.perf_counter())

    class TimedBar(tqdm_module.tqdm):
        def update(self, n=1):
            # The bar counts documents until a page is to be read (pipeline/run_progress.py).
            if n and self.unit == "page" and "page" not in marks:
                marks["page"] = time.perf_counter() - started
            return super().update(n)

        def close(self):
            bar_n[0] = int(self.n) if self.unit == "page" else 0
            return super().close()

    tqdm_module.tqdm = TimedBar  # the CLI imports it inside the command
    runner_module.LocalRunner._default_recognizer = lambda self: FastReader()  # type: ignore[method-assign]
    real_ingest = runner_module.LocalRunner._ingest

    def timed_ingest(self, *a, **k):
        marks.setdefault("file", time.perf_counter() - started)
        return real_ingest(self, *a, **k)

    runner_module.LocalRunner._ingest = timed_ingest  # type: ignore[method-assign]

    from pipeline.cli import app

    stdout, stderr = io.StringIO(), open(args.bar_file, "w")  # noqa: SIM115
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = app(["run", args.inputs, "--out", args.out, "--format", args.format,
                    "--no-rotate-pages"], standalone_mode=False)
    stderr.close()
    seconds = time.perf_counter() - started
    summary = stdout.getvalue().splitlines()
    top = sorted(statements.items(), key=lambda kv: -kv[1][1])[:8]
    print(json.dumps({
        "code": code, "seconds": seconds, "file_s": marks.get("file"), "page_s": marks.get("page"),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "summary_lines": len(summary), "summary_head": summary[:3], "bar_pages": bar_n[0],
        "statements": sum(int(v[0]) for v in statements.values()),
        "sql_s": sum(v[1] for v in statements.values()),
        "top": [(k, int(v[0]), round(v[1], 3)) for k, v in top],
    }))


def run_child(inputs: Path, out: Path, home: Path, url: str | None, fmt: str, bar: Path) -> dict:
    env = dict(os.environ, QUIRE_HOME=str(home), QUIRE_RENDER__DPI="150")
    env.pop("QUIRE_STORAGE_URL", None)
    if url:
        env["QUIRE_DATABASE_URL"] = url
    else:
        env.pop("QUIRE_DATABASE_URL", None)
    cmd = [sys.executable, __file__, "--child", "--inputs", str(inputs), "--out", str(out),
           "--format", fmt, "--bar-file", str(bar)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_database(url: str) -> str:
    """A new empty database on the server of `url`."""
    import uuid

    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,2000,8000")
    ap.add_argument("--kind", choices=("png", "pdf"), default="pdf")
    ap.add_argument("--format", default="txt,json")
    ap.add_argument("--postgres", action="store_true", help="start a PostgreSQL cluster for it")
    ap.add_argument("--url", help="a PostgreSQL server URL (its databases are made on it)")
    ap.add_argument("--sql", action="store_true", help="print the statements that took longest")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--bar-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="quire-many-") as tmp:
        server, stop = args.url, None
        if args.postgres and not server:
            from bench.bench_distributed import start_postgres

            started = start_postgres(Path(tmp))
            if started is None:
                raise SystemExit("PostgreSQL is not installed")
            stop, server = started
        try:
            measure(args, Path(tmp), server)
        finally:
            if stop:
                subprocess.run(stop, capture_output=True, check=False)


def measure(args: argparse.Namespace, tmp: Path, server: str | None) -> None:
    backend = "postgresql" if server else "sqlite"
    print(f"{backend}, {args.kind} inputs, --format {args.format}; ms per document of the whole "
          f"command (hashing, rows, exports, --out), recognition stood in for")
    print(f"{'N':>6} {'run':<6} {'first file s':>12} {'first page s':>12} {'ms/doc':>8} "
          f"{'SQL/doc':>8} {'SQL ms/doc':>10} {'peak MB':>8} {'summary lines':>13} {'bar pages':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        root = tmp / f"n{n}"
        inputs = root / "scans"
        make_inputs(inputs, n, args.kind)
        url = fresh_database(server) if server else None
        for label in ("first", "rerun"):
            r = run_child(inputs, root / "out", root / "home", url, args.format, root / f"{label}.bar")
            first_page = f"{r['page_s']:.2f}" if r["page_s"] is not None else "-"
            print(f"{n:>6} {label:<6} {r['file_s'] or 0:>12.2f} {first_page:>12} "
                  f"{1000 * r['seconds'] / n:>8.1f} {r['statements'] / n:>8.1f} "
                  f"{1000 * r['sql_s'] / n:>10.2f} {r['rss_mb']:>8.0f} {r['summary_lines']:>13} "
                  f"{r['bar_pages']:>9}", flush=True)
            if args.sql:
                for statement, count, seconds in r["top"]:
                    print(f"{'':>8} {seconds:>7.2f} s {count:>7}x  {statement}")


if __name__ == "__main__":
    main()
