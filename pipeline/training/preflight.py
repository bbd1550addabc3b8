"""What a training run checks and sets up before its first step: the output folder, the lines'
characters, and the held-out lines kept for measuring afterwards."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.training.run_config import TrainConfig

CHECKPOINT = "checkpoint"  # the folder in --out that holds the resume state

HELD_OUT_DIR = "held-out"  # in the output folder: the lines a fine-tune measures and never trains on
BEST_DIR = "best"  # in the output folder: the model as it was at its best validation


def keep_held_out(pairs: list[tuple[Path, str]], folder: Path) -> Path:
    """Copies of the held-out line pairs in `folder` (replacing what a run before left there), so
    they can be measured after training with the reading quire run uses."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path, text in pairs:
        shutil.copyfile(path, folder / path.name)
        (folder / (path.name[: -len(path.suffix)] + ".gt.txt")).write_text(text + "\n", encoding="utf-8")
    return folder


def earlier_split(pairs: list[tuple[Path, str]], folder: Path
                  ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]] | None:
    """On a resume: the folder's lines split as when the run began, by the held-out copies it
    kept in `folder` (None without them). Lines added since go to training, so the CER before
    and after measures the same lines, none of them trained on; split anew, lines already
    learnt would move into the measure."""
    held_names = {p.name for p in folder.glob("*.png")} if folder.is_dir() else set()
    if not held_names:
        return None
    return ([pair for pair in pairs if pair[0].name not in held_names],
            [pair for pair in pairs if pair[0].name in held_names])


def check_line_images(pairs: list[tuple[Path, str]], chunk: int = 256) -> list[Path]:
    """Read every line image once before the first step, naming those that cannot be read: a
    broken file found by a data worker mid-run would end hours of training. Returns those that
    look like a page or a block of lines rather than one line (`looks_like_a_page`)."""
    from pipeline.errors import BadInputError
    from pipeline.line_image import looks_like_a_page
    from pipeline.training.evaluate import read_line_images

    broken: list[str] = []
    pages: list[Path] = []
    for start in range(0, len(pairs), chunk):
        paths = [p for p, _ in pairs[start:start + chunk]]
        kept, images, failed = read_line_images(paths)
        broken += [f"{path}: {reason}" for path, reason in failed]
        pages += [paths[k] for k, image in zip(kept, images) if looks_like_a_page(image)]
    if broken:
        more = f" and {len(broken) - 5} more" if len(broken) > 5 else ""
        raise BadInputError(f"{len(broken)} line images cannot be read: {', '.join(broken[:5])}{more}; "
                            "replace or remove them (with their .gt.txt)")
    return pages


def without_pages(folder: str, pages: list[Path], train: list[tuple[Path, str]], held: list[tuple[Path, str]]
                  ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]], str | None]:
    """(lines to train on, lines held out, a notice) less `pages`, the images of `check_line_images`
    that look like a page or a block of lines: squeezed to the model's line height such an image
    is a smudge, and trained on with one line's text it teaches nothing but noise. Refuses
    (ValueError) when that leaves nothing to train on."""
    from pipeline.training.evaluate import some_of

    if not pages:
        return train, held, None
    names = set(pages)
    why = (f"{len(pages)} image{'s' if len(pages) > 1 else ''} in {folder} look{'' if len(pages) > 1 else 's'} "
           f"like a page or a block of lines, not one line ({some_of([p.name for p in pages], 5)}); "
           "`quire lines` cuts a page into its lines")
    train = [pair for pair in train if pair[0] not in names]
    held = [pair for pair in held if pair[0] not in names]
    if not train:
        raise ValueError(f"{why}: nothing is left to train on")
    return train, held, f"{why}. They are left out, neither trained on nor measured"


def left_out_notice(folder: str, found: list[tuple[Path, str | None]]) -> str | None:
    """One line naming every line image of `folder` (`line_images`) that is not trained on for
    want of a transcription, so all of them can be seen to at once; None when there are none."""
    from pipeline.training.evaluate import left_out_lines, some_of

    reasons = left_out_lines(found)
    if not reasons:
        return None
    total = sum(len(paths) for paths in reasons.values())
    parts = [f"{len(paths)} {why} ({some_of([p.name for p in paths])})" for why, paths in reasons.items()]
    return (f"{folder}: {total} line image{'s' if total > 1 else ''} left out, neither trained on nor "
            f"measured: {'; '.join(parts)}. Transcribe them to use them (an empty .gt.txt is a "
            "line not transcribed yet, or rejected)")


def without_image_notice(folder: str | Path) -> str | None:
    """One line naming the .gt.txt files of `folder` that have no line image beside them, which
    would otherwise be passed over without a word; None when there are none."""
    from pipeline.training.evaluate import some_of, transcriptions_without_image

    orphans = transcriptions_without_image(folder)
    if not orphans:
        return None
    many = len(orphans) > 1
    return (f"{folder}: {len(orphans)} .gt.txt file{'s' if many else ''} {'have' if many else 'has'} no line "
            f"image beside {'them' if many else 'it'} and {'are' if many else 'is'} passed over "
            f"({some_of([p.name for p in orphans])}): NAME.gt.txt goes with NAME.png (or .jpg, .tif, "
            ".jp2, .bmp, .webp)")


def characters_missing(tokenizer: Any, texts: list[str]) -> list[tuple[str, int]]:
    """Characters of `texts` the tokenizer can only write as its unknown token, with how many
    lines hold each, most lines first."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return []
    lines_with: dict[str, int] = {}
    for text in texts:
        for char in set(text) - {" "}:
            lines_with[char] = lines_with.get(char, 0) + 1
    missing = [c for c in lines_with if unk in tokenizer(c, add_special_tokens=False).input_ids]
    return sorted(((c, lines_with[c]) for c in missing), key=lambda x: (-x[1], x[0]))


def unwritable_notice(tokenizer: Any, folder: Path, pairs: list[tuple[Path, str]], model: str) -> str | None:
    """For `quire eval`: which of the folder's lines hold characters the model cannot write, so
    that the CER they add is not taken for misreading that training could mend; None if none."""
    from pipeline.training.evaluate import normalize, some_of

    missing = characters_missing(tokenizer, [normalize(t) for _, t in pairs])
    if not missing:
        return None
    unwritable = {c for c, _ in missing}
    lines = [p.name for p, t in pairs if unwritable & set(normalize(t))]
    return (f"{folder}: {len(lines)} line{'s' if len(lines) > 1 else ''} hold characters {model} has no letter "
            f"for: {_listed(missing)} (e.g. {some_of(lines, 5)}); it can never read them, so each of them counts as "
            "an error in the CER, one no fine-tuning of this model mends")


def _listed(missing: list[tuple[str, int]], shown: int = 12) -> str:
    """`characters_missing`'s answer in words: "'ſ' (3 lines), 'γ' (1 line) and 4 more"."""
    listed = ", ".join(f"{c!r} ({n} line{'s' if n > 1 else ''})" for c, n in missing[:shown])
    return listed + (f" and {len(missing) - shown} more" if len(missing) > shown else "")


def without_unwritable_lines(tokenizer: Any, folder: str, train: list[tuple[Path, str]],
                             held: list[tuple[Path, str]]
                             ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]], str | None]:
    """(lines to train on, lines held out, a notice) less the lines holding characters the
    tokenizer can only write as its unknown token: trained on, such a line teaches the model to
    read its letters as nothing; measured, it counts an error no training can mend. Refuses
    (ValueError) when that leaves nothing to train on."""
    from pipeline.training.evaluate import some_of

    missing = characters_missing(tokenizer, [t for _, t in train + held])
    if not missing:
        return train, held, None
    unwritable = {c for c, _ in missing}
    dropped = [p for p, t in train + held if unwritable & set(t)]
    why = (f"{len(dropped)} lines of {folder} hold characters the model's alphabet lacks: {_listed(missing)} "
           f"(e.g. {some_of([p.name for p in dropped], 5)})")
    fix = ("write them as characters it has (e.g. ſ as s), or train a new model (--model new) whose "
           "alphabet holds them")
    train = [(p, t) for p, t in train if not unwritable & set(t)]
    held = [(p, t) for p, t in held if not unwritable & set(t)]
    if not train:
        raise ValueError(f"{why}: every line to train on holds one, so nothing is left to train on; {fix}")
    return train, held, (f"{why}. They are left out, neither trained on (the model would learn to read "
                         f"those letters as nothing) nor measured; to use them, {fix}")


def check_output_folder(cfg: TrainConfig) -> None:
    """Refuse an --out that would be written over by mistake: a folder of other files, or a run
    of another model or line folder (resuming it would quietly ignore the new --model/--data)."""
    out = Path(cfg.out_dir)
    state = out / CHECKPOINT / "state.pt"
    _refuse_writing_over_a_model(cfg, out)
    if not state.exists():
        # (What a run writes before its first save, held-out copies and a save cut short, is its own.)
        own = {HELD_OUT_DIR, ".saving", BEST_DIR, ".best-saving"}
        if (out.is_dir() and not (out / CHECKPOINT).is_dir()
                and any(p.name not in own for p in out.iterdir())):
            raise ValueError(f"--out {out} holds other files and no training run: give a new or "
                             "empty folder (its config.json and weights would be written over)")
        return
    if not cfg.resume:
        return  # --no-resume: start over in the run's own folder
    import torch

    before = torch.load(state, map_location="cpu", weights_only=False).get("train_config", {})

    def same_data(old: str | None) -> bool:
        if old is None or old == cfg.data:
            return True
        return old != "synthetic" and cfg.data != "synthetic" and Path(old).resolve() == Path(cfg.data).resolve()

    if not same_data(before.get("data")) or before.get("model", cfg.model) != cfg.model:
        from pipeline.config import SHIPPED_MODELS_DIR

        # A model Quire ships is never started over (_refuse_writing_over_a_model): no --no-resume.
        start_over = ("" if out.expanduser().resolve().parent == SHIPPED_MODELS_DIR.resolve() else
                      ", or --no-resume to start over in this folder (its model is then written over)")
        raise ValueError(
            f"--out {out} holds a run of --model {before.get('model')} on --data {before.get('data')}; "
            f"to train --model {cfg.model} on --data {cfg.data} give a new --out{start_over}")


def _refuse_writing_over_a_model(cfg: TrainConfig, out: Path) -> None:
    """The model a run starts from is never its --out (its weights would be replaced by the
    first save), and a model Quire ships is only ever trained on by its own run, resumed."""
    from pipeline.config import SHIPPED_MODELS_DIR, resolve_model_path

    target = out.expanduser().resolve()
    if cfg.model != "new" and Path(resolve_model_path(cfg.model)).expanduser().resolve() == target:
        raise ValueError(f"--out {out} is the model this run starts from (--model {cfg.model}): "
                         "training would write over it; give a new --out")
    shipped = SHIPPED_MODELS_DIR.resolve()
    if target.parent == shipped and target.is_dir() and not cfg.resume:
        raise ValueError(f"--out {out} is {target.name}, a model Quire ships: --no-resume would "
                         "write over it; give a new --out")
