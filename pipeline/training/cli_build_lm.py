"""The typer command behind `quire build-lm`, a model's character LM (registered by pipeline/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_common import fail as _fail
from pipeline.training.preflight import BEST_DIR


def build_lm_command(
    out: Annotated[
        Path,
        typer.Argument(help="A model folder (the language model becomes <folder>/char_lm.npz, "
                       "which recognition then weighs in) or a .npz file to write."),
    ],
    text: Annotated[
        list[Path] | None,
        typer.Option("--text", "-t", help="UTF-8 text files, one line of writing per line: "
                     "transcriptions or other text like the material you will read, or a line "
                     "folder (its *.gt.txt). Repeatable. Default: the text the synthetic "
                     "training lines are drawn from."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Know only the characters this model's tokenizer has. Default: the "
                     "folder given as OUT if it holds a model, else the text's own characters."),
    ] = None,
    order: Annotated[
        int, typer.Option(min=1, max=7, help="Characters per n-gram: the last order - 1 are the context.")
    ] = 6,
    generated: Annotated[
        int, typer.Option(min=0, help="With the default text: synthetic lines of each kind (printed, "
                          "receipt, handwritten) added to the book and prose text.")
    ] = 60_000,
    default_text: Annotated[
        bool | None,
        typer.Option("--default-text/--no-default-text", help="Count the default text (the book, "
                     "prose and generated lines the shipped model's is built from) as well as --text: "
                     "a few hundred transcribed lines alone make a thin model. Default: only "
                     "without --text."),
    ] = None,
) -> None:
    """Build a character language model for 'rescore' and 'ctc' reading (pipeline.char_lm).

    Recognition uses <model folder>/char_lm.npz when it is there: the n-gram model weighs how
    likely each reading is as text, so unclear writing is read as the likelier words. Give
    --text with transcriptions of your own collection (another language, another period) to
    fit it to your material; add --default-text to count them with the default text.
    """
    from tqdm import tqdm

    from pipeline import char_lm

    target = out / char_lm.FILE_NAME if out.is_dir() else out
    if target.suffix != ".npz":
        _fail(f"{out}: give a model folder or a .npz file")
    if out.is_dir() and not (out / "config.json").is_file():
        _fail(f"{out} holds no model (no config.json), so nothing would read a "
              f"{char_lm.FILE_NAME} there; give the model folder, or a .npz path")
    lines: list[str] = []
    for path in text or ():
        if path.is_dir():
            # A line folder (png + gt.txt): its transcriptions are the text.
            lines += [" ".join(t.split()) for _, t in _folder_texts(path)]
            continue
        try:
            lines += [" ".join(line.split()) for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{path}: cannot read it as UTF-8 text ({exc})")
    if default_text or (default_text is None and not text):
        from pipeline.training.corpus import language_model_lines

        lines += language_model_lines(generated)
    source = model or (str(out) if (out / "tokenizer.json").is_file() else None)
    alphabet = _model_alphabet(source) if source else None
    try:
        with tqdm(total=len(lines), unit="line", desc="count", disable=None) as bar:
            lm = char_lm.build(lines, order, alphabet=alphabet, progress=bar.update)
    except ValueError as exc:
        _fail(str(exc))
    _save_keeping_previous(lm, target)
    typer.echo(f"{target}: order {order}, {len(lm.alphabet)} characters, {len(lm.ngram_keys):,} "
               f"n-grams from {len(lines):,} lines ({target.stat().st_size / 1e6:.1f} MB)")
    best = out / BEST_DIR
    if out.is_dir() and (best / "best.json").is_file():
        # The run's best model (quire train keeps it beside the last) reads with it too.
        _save_keeping_previous(lm, best / char_lm.FILE_NAME)
        typer.echo(f"{best / char_lm.FILE_NAME}: the same, for the run's best model", err=True)


def _save_keeping_previous(lm, target: Path) -> None:
    """Save over `target`, keeping one step back: a thin model built by mistake is undone."""
    if target.exists():
        previous = target.with_name(target.stem + ".previous.npz")
        target.replace(previous)
        typer.echo(f"the language model that was there is now {previous}", err=True)
    lm.save(target)


def _folder_texts(folder: Path) -> list[tuple[Path, str]]:
    from pipeline.errors import QuireError
    from pipeline.training.evaluate import load_pairs

    try:
        return load_pairs(folder)
    except QuireError as exc:
        _fail(str(exc))


def _model_alphabet(model: str) -> str:
    """The single-character tokens of a model's tokenizer, in id order."""
    import transformers
    from transformers import AutoTokenizer

    from pipeline.config import resolve_model_path

    transformers.logging.set_verbosity_error()  # its notices about the model's config are noise here
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError) as exc:
        _fail(f"cannot load the tokenizer of {model!r}: {exc}")
    specials = set(tokenizer.all_special_tokens)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return "".join(t for t, _ in vocab if len(t) == 1 and t not in specials)
