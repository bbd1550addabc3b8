"""Where a recognition model is: a folder here, a shipped model, the hub's cache, or the hub,
checked before transformers tries (and retries) to download it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.config import SHIPPED_MODELS_DIR, resolve_model_path

HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")


def locate_model(name: str) -> str:
    """`resolve_model_path`, checked: a folder here, a shipped model, a hub model in the local
    cache, or one the Hugging Face hub has. Anything else fails at once with what was tried,
    instead of after the hub client's retries (minutes, on a machine without internet)."""
    from pipeline.errors import ModelLoadError

    path = resolve_model_path(name)
    shipped = ", ".join(sorted(p.name for p in SHIPPED_MODELS_DIR.iterdir() if p.is_dir())) \
        if SHIPPED_MODELS_DIR.is_dir() else "none"
    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            # A line folder or a run's held-out/ given by mistake: transformers' own words for it
            # ask for a "processing class", and `quire train` ended in its traceback.
            raise ModelLoadError(f"{name} is a folder but holds no model (no config.json): give the "
                                 f"folder `quire train --out` wrote, or a shipped model's name ({shipped})")
        return path
    tried = f"model {name!r} is not a folder here nor a shipped model ({shipped})"
    if Path(name).expanduser().exists() or not HUB_NAME.fullmatch(name):
        raise ModelLoadError(f"{tried}, nor a Hugging Face hub name")
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return path  # downloaded before: loads from the cache
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelLoadError(f"{tried}, and it is not in the hub cache (HF_HUB_OFFLINE is set)")
    try:
        HfApi().model_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise ModelLoadError(f"{tried}, nor a model on the Hugging Face hub") from None
    except HfHubHTTPError:
        pass  # gated or rate-limited: from_pretrained says what it needs
    except Exception as e:  # noqa: BLE001 - no network, DNS, TLS: the hub cannot be asked
        raise ModelLoadError(f"{tried}, and the Hugging Face hub cannot be reached to fetch it "
                             f"({e}); give a local folder holding the checkpoint") from None
    return path
