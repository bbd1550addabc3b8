"""A run's checkpoint: saving the model and its resume state to --out atomically, and restoring it."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import char_lm
from pipeline.config import resolve_model_path
from pipeline.training.averaging import WeightAverage
from pipeline.training.preflight import CHECKPOINT  # the resume state's folder in --out
from pipeline.training.run_config import TrainConfig

# With a weight average the shipped model.safetensors holds the average; the weights training
# goes on from are kept here, in the checkpoint.
TRAINING_WEIGHTS = "training_weights.safetensors"


def _compact(state: dict[str, Any]) -> dict[str, Any]:
    """Adam state small enough to commit: second moments in bf16, first moments dropped.

    The first moment (momentum, beta1 0.9) rebuilds itself within a few dozen steps of a resume;
    the second moment scales each weight's step and would take thousands, so it is kept.
    """
    out = {"param_groups": state["param_groups"], "state": {}}
    for k, v in state["state"].items():
        out["state"][k] = {
            n: (t.to(torch.bfloat16) if t.is_floating_point() and t.dim() > 0 else t)
            for n, t in v.items()
            if n != "exp_avg"
        }
    return out


def _expand(state: dict[str, Any]) -> dict[str, Any]:
    """Undo _compact: a zero first moment where it was dropped (load_state_dict casts the rest)."""
    for v in state["state"].values():
        if "exp_avg_sq" in v and "exp_avg" not in v:
            v["exp_avg"] = torch.zeros_like(v["exp_avg_sq"], dtype=torch.float32)
    return state


def save(
    model: Any,
    processor: Any,
    opt: Any,
    sched: Any,
    step: int,
    lines: int,
    cfg: TrainConfig,
    history: list[dict[str, Any]],
    average: WeightAverage | None = None,
) -> None:
    """Write the HF model to out_dir and the resume state to out_dir/checkpoint, each atomically.

    With a weight average, the HF model is the average and the checkpoint keeps the training weights.
    """
    from safetensors.torch import save_model

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / CHECKPOINT).mkdir(parents=True)
    # Weights in bf16: half the size, and inference and training upcast them on load.
    training = copy.deepcopy(model).to(torch.bfloat16)
    if average is None:
        training.save_pretrained(tmp)
        (out / CHECKPOINT / TRAINING_WEIGHTS).unlink(missing_ok=True)  # a stale one would win on resume
    else:
        shipped = copy.deepcopy(model)
        average.copy_to(shipped)
        shipped.to(torch.bfloat16).save_pretrained(tmp)
        save_model(training, str(tmp / CHECKPOINT / TRAINING_WEIGHTS))
    processor.save_pretrained(tmp)
    torch.save(_compact(opt.state_dict()), tmp / CHECKPOINT / "optimizer.pt")
    torch.save(
        {
            "step": step,
            "lines_seen": lines,
            "average_updates": average.updates if average is not None else 0,
            "scheduler": sched.state_dict(),
            "train_config": asdict(cfg),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
        },
        tmp / CHECKPOINT / "state.pt",
    )
    (tmp / CHECKPOINT / "history.json").write_text(json.dumps(history, indent=1))
    language_model = source_language_model(cfg)
    if language_model is not None:
        shutil.copyfile(language_model, tmp / char_lm.FILE_NAME)
    make_readable(tmp)
    for f in tmp.rglob("*"):
        if f.is_file():
            dest = out / f.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)  # atomic per file: a kill mid-save never leaves a torn file
    shutil.rmtree(tmp, ignore_errors=True)


def make_readable(folder: Path) -> None:
    """Give what a save wrote the modes the user's umask gives new files and folders: the
    weights come from a private temp file (0600), and a worker running as another user must
    be able to load the model."""
    umask = os.umask(0)
    os.umask(umask)
    for f in folder.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def source_language_model(cfg: TrainConfig) -> Path | None:
    """The character language model of the checkpoint being fine-tuned, if it has one: it goes
    with the tuned model (which keeps the tokenizer), unless the output has its own already."""
    if cfg.model == "new" or (Path(cfg.out_dir) / char_lm.FILE_NAME).is_file():
        return None
    path = Path(resolve_model_path(cfg.model)) / char_lm.FILE_NAME
    return path if path.is_file() else None


def restore(out_dir: str, opt: Any, sched: Any) -> tuple[int, int, int, list[dict[str, Any]]]:
    """Optimizer, scheduler and random state; returns the step, lines seen, the weight average's
    update count and the validation history."""
    ck = Path(out_dir) / CHECKPOINT
    # Read onto the CPU: a checkpoint saved on a GPU (the shipped one) resumes on a machine
    # without one, and load_state_dict moves Adam's state to wherever the parameters are.
    state = torch.load(ck / "state.pt", map_location="cpu", weights_only=False)
    opt.load_state_dict(_expand(torch.load(ck / "optimizer.pt", map_location="cpu", weights_only=False)))
    for group in opt.param_groups:
        for p in group["params"]:
            # A layer reshaped since the checkpoint (a widened CTC head) starts its Adam state anew.
            if p in opt.state and opt.state[p]["exp_avg_sq"].shape != p.shape:
                del opt.state[p]
    sched.load_state_dict(state["scheduler"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    hist_file = ck / "history.json"
    history = json.loads(hist_file.read_text()) if hist_file.exists() else []
    updates = int(state.get("average_updates", 0))
    return int(state["step"]), int(state.get("lines_seen", 0)), updates, history
