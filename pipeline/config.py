"""Settings from the environment (prefix QUIRE_) with nested option models for each stage."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.decodings import DECODINGS
from pipeline.precision import PRECISIONS

# Models the project ships live beside the packages in a source checkout (models/<name>).
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "quire-line-v1"
# Lines under this confidence are read a second time, stretched (pipeline.recognize).
RETRY_BELOW = 0.95
# The devices a model is put on: torch's names (mps, Apple's GPU, is taken but not advertised).
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"


class RenderOptions(BaseModel):
    """How documents become page images."""

    dpi: int = Field(300, ge=50, le=1200)
    chunk_pages: int = Field(8, ge=1, description="PDF pages rendered per pdftoppm call")
    max_pixels: int = Field(200_000_000, ge=1, description="refuse pages larger than this")
    # A document of more pages fails as too large before any is read: one file must not hold an
    # ingest worker for hours (a book scan runs to a few thousand pages; split larger ones).
    max_pages: int = Field(10_000, ge=1, description="refuse documents with more pages than this")
    # A PDF page that is one scanned image is taken straight from the file (pipeline.pdf_scans),
    # resampled to `dpi` only if its own resolution differs; False renders every page with poppler.
    embedded_scans: bool = True
    # Sideways and upside-down pages are turned upright (quarter turns, pipeline.orientation)
    # before segmentation; exports and the stored page image are the upright page.
    rotate_pages: bool = True
    # How page images are kept in the store (pipeline.page_images): auto keeps a page lossless
    # unless its source was lossy already or is a PDF; black-and-white pages are 1-bit PNGs.
    page_images: Literal["auto", "lossless", "compact"] = "auto"


class RecognizeOptions(BaseModel):
    """How line crops become text."""

    beam: int = Field(1, ge=1, le=16)
    batch_size: int = Field(32, ge=1)
    # auto: what the model's config records (rescore for quire-line-v1); ctc is 2-6x faster.
    decode: Literal[DECODINGS] = "auto"  # type: ignore[valid-type]  # one of DECODINGS
    max_new_tokens: int = Field(160, ge=1, le=1024)
    # Lines read with less confidence are read again stretched wider, keeping the surer reading
    # (Quire's line models only; 0 turns it off). See pipeline.recognize.RETRY_STRETCHES.
    retry_below: float = Field(RETRY_BELOW, ge=0.0, le=1.0)
    # 'rescore' and 'ctc' weigh in the model's character language model (char_lm.npz in its
    # folder) where it has one: unclear writing is read as the likelier text ("mental", not "mentat").
    language_model: bool = True
    # auto: bf16 autocast on CUDA and on CPUs with native bf16 (1.2-1.5x on CPU, same CER), else fp32.
    precision: Literal[PRECISIONS] = "auto"  # type: ignore[valid-type]  # one of PRECISIONS


class QueueOptions(BaseModel):
    """How work is split into Celery tasks and how long the broker waits on a silent worker."""

    # Redis hands an unacked message to another worker after this long: it must exceed the
    # longest task, or a slow task runs twice (harmless, but wasted). Tests set it short.
    visibility_timeout: int = Field(6 * 3600, ge=1)
    task_time_limit: int = Field(3 * 3600, ge=10, description="hard limit per task, seconds")
    recognize_on: Literal["cpu", "gpu"] = Field("cpu", description="sizes default batches")
    recognize_batch: int | None = Field(None, ge=1, description="line crops per recognize task")
    lease_seconds: int = Field(600, ge=1, description="how long a worker owns lines it took")
    topup: bool = Field(True, description="fill small batches with other documents' lines")

    def batch_lines(self) -> int:
        """Lines per recognize task: a GPU wants big batches, a CPU core small ones."""
        return self.recognize_batch or (128 if self.recognize_on == "gpu" else 32)


class ApiOptions(BaseModel):
    """The job API's limits and secrets."""

    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1)
    webhook_secret: str = Field("", description="HMAC key for completion webhooks")
    webhook_timeout: float = Field(10.0, gt=0)
    # A finished job's webhook not sent this long after its last try ended (its notify task
    # lost with a killed worker) is queued again by a finish worker, which looks this often too.
    webhook_resend_seconds: int = Field(60, ge=1)
    # Which s3:// URIs tenants may submit, comma-separated prefixes ("s3://archive/,s3://in/a/").
    # Empty: any object the API's credentials can read, except Quire's own stored documents.
    uri_prefixes: str = ""
    # Where tenants' completion webhooks may point, comma-separated URL prefixes
    # ("https://hooks.example.org/"). Empty: any http(s) URL; set it where tenants are not
    # trusted, or a webhook_url makes the workers POST to hosts inside the network.
    webhook_prefixes: str = ""
    # Which recognition models tenants may ask for, comma-separated; empty: only the deployment's
    # own (QUIRE_MODEL). A model is a folder or hub name the workers load: tenants must not be
    # able to point them at any path on their disks.
    models: str = ""


class RunOptions(BaseModel):
    """How a `quire run` shows that it is still running to other hosts sharing its database."""

    # A running run renews its job's heartbeat this often (one small UPDATE, off the work's thread).
    heartbeat_seconds: int = Field(30, ge=1)
    # From another host (its processes cannot be looked at) a run whose heartbeat is older than
    # this, and than three of its own beats, is taken as ended. On its own host its process is
    # checked instead, exactly.
    stale_seconds: int = Field(300, ge=1)


class Settings(BaseSettings):
    """Everything configurable, read from QUIRE_* variables (nested: QUIRE_RENDER__DPI=200)."""

    model_config = SettingsConfigDict(env_prefix="QUIRE_", env_nested_delimiter="__")

    home: Path = Field(Path("quire-data"), description="where the embedded defaults keep data")
    database_url: str | None = None
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    broker_url: str = "redis://127.0.0.1:6379/0"
    model: str = DEFAULT_MODEL
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    render: RenderOptions = RenderOptions()
    recognize: RecognizeOptions = RecognizeOptions()
    queue: QueueOptions = QueueOptions()
    api: ApiOptions = ApiOptions()
    run: RunOptions = RunOptions()

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        # Checked here, so a typo fails in one line before any work starts.
        if not re.fullmatch(DEVICE_PATTERN, value):
            raise ValueError("use auto, cpu, cuda or cuda:N")
        return value

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'quire.sqlite').resolve()}"

    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.home / "store").resolve().as_uri()


class SettingsError(ValueError):
    """A QUIRE_* value (or an option standing in for one) that does not fit its setting."""


def load_settings(options: Mapping[str, str] | None = None, **values) -> Settings:
    """Settings from the environment plus `values`, with a bad value named in one plain line
    per problem (the variable, what it holds, what it should be) instead of pydantic's dump.
    `options` names the command options the values came from ({"render__dpi": "--dpi"}), so a
    bad one is called by the option the user typed, not by a variable they never set."""
    try:
        return Settings(**values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            path = "__".join(str(part) for part in err["loc"])
            name = (options or {}).get(path) or "QUIRE_" + path.upper()
            problems.append(f"{name}={err.get('input')!r}: {err['msg'].removeprefix('Value error, ')}")
        raise SettingsError("bad setting " + "; ".join(problems)) from None


# QUIRE_* variables that are not settings: read by the CLI, the bench scripts and the tests.
OTHER_VARIABLES = {"QUIRE_TOKEN", "QUIRE_TRAIN_ASSETS", "QUIRE_DEVICE_MODEL", "QUIRE_VAL_DIR",
                   "QUIRE_VIEWER_SCREENSHOT", "QUIRE_WEBHOOK_SECRET"}


def setting_variables() -> set[str]:
    """Every QUIRE_* variable a setting is read from (nested ones as QUIRE_SECTION__FIELD)."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"QUIRE_{name.upper()}")
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= {f"QUIRE_{name.upper()}__{sub.upper()}" for sub in field.annotation.model_fields}
    return names


def unknown_variables(environ: dict[str, str]) -> list[str]:
    """QUIRE_* variables that no setting reads (a typo is otherwise silently ignored), each
    with the setting it most likely means."""
    import difflib

    known = setting_variables()
    notes = []
    for name in sorted(k for k in environ if k.upper().startswith("QUIRE_")):
        if name.upper() in known or name.upper() in OTHER_VARIABLES:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.8)
        notes.append(f"{name} is not a setting and is ignored" +
                     (f" (did you mean {close[0]}?)" if close else ""))
    return notes


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests build Settings(...) directly instead."""
    return load_settings()


def resolve_model_path(name: str) -> str:
    """A shipped model's name maps to its folder; anything else (hub name, path) passes through."""
    shipped = SHIPPED_MODELS_DIR / name
    if "/" not in name and shipped.is_dir():
        return str(shipped)
    return name
