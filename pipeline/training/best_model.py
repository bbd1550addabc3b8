"""A run's best model: the CER validations are judged by, OUT/best, and what the run's end says of it."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from pipeline import char_lm
from pipeline.training.checkpoint import make_readable, source_language_model
from pipeline.training.preflight import BEST_DIR
from pipeline.training.run_config import TrainConfig


def judged_cer(scores: dict[str, Any]) -> float | None:
    """The CER a validation is judged by: the decoder's mean over the real lines (held out of
    the folder, or --val-dir's), else over the synthetic ones."""
    real = [v for k, v in scores.items() if k.startswith("cer_") and k != "cer_synthetic"]
    chosen = real or ([scores["cer_synthetic"]] if "cer_synthetic" in scores else [])
    return sum(chosen) / len(chosen) if chosen else None


def beats(judged: float, best: tuple[int, float] | None) -> bool:
    """Whether a validation's judged CER makes its model the best so far. Only a lower CER does:
    on a tie the earlier model stays, the one the run started from included, as a step that
    reads no better is no reason to take its changes (a few held-out lines tie often)."""
    return best is None or judged < best[1]


def best_validation(history: list[dict[str, Any]]) -> tuple[int, float] | None:
    """(step, judged CER) of the first of a run's best validations, the starting model's (step 0
    of a fine-tune) included, or None before its first."""
    best: tuple[int, float] | None = None
    for h in history:
        judged = judged_cer(h)
        if judged is not None and beats(judged, best):
            best = (h["step"], judged)
    return best


def best_verdict(history: list[dict[str, Any]], best: tuple[int, float] | None, out_dir: str) -> list[str]:
    """What the end of a run says about its best model: where it is when it is not the last
    step's, and when no step read better than the model the run started from."""
    if best is None or not history or history[-1]["step"] == best[0]:
        return []
    kept = Path(out_dir) / BEST_DIR
    if best[0] > 0:
        return [(f"the best validation was at step {best[0]} (CER {best[1]:.2%}): that model is in {kept}; "
                 f"{out_dir} holds the last step's")]
    last = judged_cer(history[-1])
    at_last = f", the last step {last:.2%}" if last is not None else ""
    said = (f"no step of this run read the validation lines better than the model it started from "
            f"(CER {best[1]:.2%}{at_last}): {kept} holds that model; {out_dir} holds the last step's")
    if last is not None and last > best[1]:
        said = f"warning: {said}. Keep using it, or train again with a lower --lr or on more lines"
    return [said]


def save_best(model: Any, processor: Any, cfg: TrainConfig, step: int, score: float) -> Path:
    """Write the model as it is now to OUT/best, a model folder of its own (config, weights,
    processor, language model), replacing the one there; `best.json` says which step it is."""
    out = Path(cfg.out_dir)
    tmp, best = out / ".best-saving", out / BEST_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(tmp)
    processor.save_pretrained(tmp)
    language_model = source_language_model(cfg) or out / char_lm.FILE_NAME
    if language_model.is_file():
        shutil.copyfile(language_model, tmp / char_lm.FILE_NAME)
    (tmp / "best.json").write_text(json.dumps({"step": step, "judged_cer": round(score, 4)}) + "\n")
    make_readable(tmp)
    shutil.rmtree(best, ignore_errors=True)
    os.replace(tmp, best)
    return best
