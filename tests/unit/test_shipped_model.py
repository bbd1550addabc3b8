"""The model the project ships (models/quire-line-v1) and its language model, as a user gets them."""

from __future__ import annotations

import pytest

from pipeline import char_lm
from pipeline.config import DEFAULT_MODEL, resolve_model_path
from pipeline.recognize import Recognizer
from pipeline.training.evaluate import cer
from tests.model_fixtures import render_line

LINES = ("The County Archives hold 1,284 letters.", "Received 12 March 1931, with thanks",
         "TOTAL RM 45.60", "mental and corporeal")


@pytest.fixture(scope="module")
def shipped():
    return Recognizer(DEFAULT_MODEL, device="cpu")


def test_the_shipped_language_model_knows_every_character_the_model_reads(shipped):
    lm = char_lm.load(resolve_model_path(DEFAULT_MODEL) + "/" + char_lm.FILE_NAME)
    vocab = shipped.processor.tokenizer.get_vocab()
    characters = [t for t, i in vocab.items() if len(t) == 1 and i not in shipped.processor.tokenizer.all_special_ids]
    assert len(characters) > 150
    assert lm.symbols("".join(characters)).count(lm.unknown) == 0
    assert shipped.fusion is not None and shipped.decode == "rescore"


def test_the_shipped_model_reads_printed_lines(shipped):
    read = shipped.recognize([render_line(t) for t in LINES])
    assert cer(LINES, [r.text for r in read]) <= 0.02, [r.text for r in read]
    assert all(r.confidence > 0.5 for r in read)


def test_two_threads_load_models_at_once_and_both_read():
    """`quire run` loads its page-turning reader on the ingest thread while the recognizer loads
    on the reading thread: concurrent loads gave weights with no data ("meta tensor") and killed
    the run."""
    import threading

    readers: list[Recognizer] = []
    errors: list[BaseException] = []

    def load(**options) -> None:
        try:
            readers.append(Recognizer(DEFAULT_MODEL, device="cpu", **options))
        except Exception as exc:  # noqa: BLE001  (surfaced below; else lost with the thread)
            errors.append(exc)

    for _ in range(2):
        threads = [threading.Thread(target=load, kwargs={"decode": "ctc", "retry_below": 0.0}),
                   threading.Thread(target=load)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for reader in readers:
        assert reader.recognize([render_line(LINES[0])])[0].text == LINES[0]


def test_the_shipped_checkpoint_resumes_on_a_machine_without_a_gpu(tmp_path):
    """Its optimizer state was saved on a GPU; `bench/train_default_model.sh` resumes it here
    (it failed with "Attempting to deserialize object on a CUDA device")."""
    import shutil

    from pipeline.training.checkpoint import restore
    from pipeline.training.optimization import optimizer_and_schedule
    from pipeline.training.run_config import TrainConfig
    from pipeline.training.starting_model import load_or_build

    out = tmp_path / "model"
    shutil.copytree(resolve_model_path(DEFAULT_MODEL), out)
    cfg = TrainConfig(out_dir=str(out), model="new", device="cpu")
    model, _, _ = load_or_build(cfg)
    _, opt, sched = optimizer_and_schedule(model, cfg)
    step, lines, _, history = restore(str(out), opt, sched)
    assert step >= 68_000 and lines >= 4_000_000 and history
    states = [s for s in opt.state.values() if "exp_avg" in s]
    assert states and all(s["exp_avg"].device.type == "cpu" for s in states)
