"""Settings come from QUIRE_* variables, nested options with __, embedded defaults under QUIRE_HOME."""

from __future__ import annotations

import pytest

from pipeline.config import (
    DEFAULT_MODEL,
    Settings,
    SettingsError,
    load_settings,
    resolve_model_path,
)


def test_embedded_defaults_live_under_home(tmp_path, monkeypatch):
    for name in ("QUIRE_DATABASE_URL", "QUIRE_STORAGE_URL", "QUIRE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUIRE_HOME", str(tmp_path))
    s = Settings()
    assert s.resolved_database_url() == f"sqlite:///{tmp_path / 'quire.sqlite'}"
    assert s.resolved_storage_url() == (tmp_path / "store").as_uri()
    assert s.model == DEFAULT_MODEL and s.render.dpi == 300 and s.recognize.beam == 1


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("QUIRE_DATABASE_URL", "postgresql+psycopg2://q:q@db/quire")
    monkeypatch.setenv("QUIRE_STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("QUIRE_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("QUIRE_BROKER_URL", "redis://redis:6379/1")
    monkeypatch.setenv("QUIRE_DEVICE", "cuda:1")
    monkeypatch.setenv("QUIRE_RENDER__DPI", "200")
    monkeypatch.setenv("QUIRE_RECOGNIZE__BATCH_SIZE", "128")
    s = Settings()
    assert s.resolved_database_url().startswith("postgresql+psycopg2://")
    assert s.resolved_storage_url() == "s3://bucket/prefix"
    assert (s.s3_endpoint_url, s.broker_url, s.device) == ("http://minio:9000", "redis://redis:6379/1", "cuda:1")
    assert (s.render.dpi, s.recognize.batch_size) == (200, 128)


def test_bad_values_name_each_variable_and_the_reason(monkeypatch):
    monkeypatch.setenv("QUIRE_RENDER__DPI", "high")
    monkeypatch.setenv("QUIRE_QUEUE__RECOGNIZE_ON", "tpu")
    with pytest.raises(SettingsError) as bad:
        load_settings()
    message = str(bad.value)
    assert "QUIRE_RENDER__DPI='high': Input should be a valid integer" in message
    assert "QUIRE_QUEUE__RECOGNIZE_ON='tpu': Input should be 'cpu' or 'gpu'" in message


def test_model_names_resolve_to_shipped_folders_or_pass_through(tmp_path):
    assert resolve_model_path("microsoft/trocr-base-printed") == "microsoft/trocr-base-printed"
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)


def test_retrained_weights_change_the_document_profile(tmp_path):
    """A model retrained under the same name reads differently, so its documents are redone;
    the same weights keep the profile, so finished documents are still skipped."""
    import os

    from pipeline.process import profile_key

    model = tmp_path / "my-model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"weights, first training run")
    first = profile_key(model=str(model), dpi=300, beam=1)
    assert profile_key(model=str(model), dpi=300, beam=1) == first
    weights.write_bytes(b"weights, after more training")
    os.utime(weights, ns=(1, 1))  # a new mtime even on filesystems with coarse timestamps
    assert profile_key(model=str(model), dpi=300, beam=1) != first
    assert profile_key(model="microsoft/trocr-base-printed", dpi=300, beam=1) != first
    # The decoding changes the text: another one redoes documents; 'auto' is the recorded one.
    (model / "config.json").write_text('{"quire_decoding": "rescore"}')
    auto = profile_key(model=str(model), dpi=300, beam=1)
    assert auto == profile_key(model=str(model), dpi=300, beam=1, decode="rescore")
    assert auto != profile_key(model=str(model), dpi=300, beam=1, decode="ctc")


def test_a_new_line_preparation_redoes_documents(tmp_path, monkeypatch) -> None:
    """Crops prepared differently (sheared upright since session 21) read differently: documents
    read before are redone, not reused."""
    from pipeline import process

    before = process.profile_key(model=str(tmp_path), dpi=300, beam=1)
    monkeypatch.setattr(process, "PREPARATION_VERSION", "next")
    assert process.profile_key(model=str(tmp_path), dpi=300, beam=1) != before


def test_the_retry_setting_is_part_of_the_document_profile(tmp_path) -> None:
    from pipeline.process import profile_key

    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w")
    on = profile_key(model=str(model), dpi=300, beam=1, retry_below=0.95)
    assert on != profile_key(model=str(model), dpi=300, beam=1, retry_below=0.0)
    assert on == profile_key(model=str(model), dpi=300, beam=1)  # 0.95 is the default


def test_the_language_model_and_its_file_are_part_of_the_document_profile(tmp_path) -> None:
    from pipeline import char_lm
    from pipeline.process import profile_key

    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w")
    without_file = profile_key(model=str(model), dpi=300, beam=1)
    char_lm.build(["some text"], order=2).save(model / char_lm.FILE_NAME)
    with_file = profile_key(model=str(model), dpi=300, beam=1)
    assert with_file != without_file
    assert profile_key(model=str(model), dpi=300, beam=1, language_model=False) not in (with_file, without_file)
    char_lm.build(["other text"], order=2).save(model / char_lm.FILE_NAME)
    assert profile_key(model=str(model), dpi=300, beam=1) != with_file  # a rebuilt file redoes documents


def test_a_mistyped_variable_is_named_with_the_setting_it_means():
    from pipeline.config import unknown_variables

    notes = unknown_variables({"QUIRE_RENDER_DPI": "150", "QUIRE_RENDER__DPI": "150",
                               "QUIRE_TOKEN": "qk_x", "QUIRE_NONSENSE_THING": "1", "HOME": "/root"})
    assert notes == ["QUIRE_NONSENSE_THING is not a setting and is ignored",
                     "QUIRE_RENDER_DPI is not a setting and is ignored (did you mean QUIRE_RENDER__DPI?)"]


def test_pages_rendered_instead_of_taken_from_the_file_are_another_result():
    from pipeline.process import JobOptions

    taken = JobOptions.from_settings(Settings(model="m"))
    rendered = JobOptions.from_settings(Settings(model="m", render={"embedded_scans": False}))
    assert taken.profile != rendered.profile  # QUIRE_RENDER__EMBEDDED_SCANS=false reads again
    assert "embedded_scans" not in taken.as_dict()  # jobs begun before keep their keys
    assert JobOptions.from_dict(rendered.as_dict()) == rendered
    assert JobOptions.from_dict(taken.as_dict()) == taken


def test_pages_read_as_they_come_are_another_result():
    from pipeline.process import JobOptions

    turned = JobOptions.from_settings(Settings(model="m"))
    as_they_come = JobOptions.from_settings(Settings(model="m", render={"rotate_pages": False}))
    assert turned.profile != as_they_come.profile  # QUIRE_RENDER__ROTATE_PAGES=false reads again
    assert "rotate_pages" not in turned.as_dict()
    assert as_they_come.as_dict()["rotate_pages"] is False
    assert JobOptions.from_dict(as_they_come.as_dict()) == as_they_come
