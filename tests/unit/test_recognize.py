"""Recognizer: loads checkpoints by path, reads lines in order, beam search, confidences, limits."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.errors import ModelLoadError
from pipeline.line_image import letterbox, normalize_ink, trim_padding, trimmed_width, width_order
from pipeline.model_input import fit_lines
from pipeline.native_memory import KERNEL_CACHE
from pipeline.recognize import Recognizer
from tests.model_fixtures import MEMORISED, build_memorising_model, build_random_model, render_line


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    return build_memorising_model(tmp_path_factory.mktemp("reader"))


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return build_random_model(tmp_path_factory.mktemp("random"))


def test_reads_lines_and_keeps_input_order_across_width_sorted_batches(reader):
    crops = [render_line(t) for t in MEMORISED] * 3  # widths differ, so sorting reorders them
    recognizer = Recognizer(str(reader), batch_size=2)
    results = recognizer.recognize(crops)
    assert [r.text for r in results] == list(MEMORISED) * 3
    assert all(0.9 < r.confidence <= 1.0 for r in results)


def test_beam_search_reads_the_same(reader):
    results = Recognizer(str(reader), beam=3).recognize([render_line(t) for t in MEMORISED])
    assert [r.text for r in results] == list(MEMORISED)
    assert all(0.0 < r.confidence <= 1.0 for r in results)


def test_unreadable_input_gets_low_confidence(reader):
    noise = np.random.default_rng(1).integers(0, 255, (40, 300), dtype=np.uint8)
    good = Recognizer(str(reader)).recognize([render_line(MEMORISED[0]), noise])
    assert good[1].confidence < good[0].confidence


def test_int8_quantized_model_still_reads(reader):
    results = Recognizer(str(reader), quantize=True).recognize([render_line(t) for t in MEMORISED])
    assert [r.text for r in results] == list(MEMORISED)


def test_max_new_tokens_bounds_output(random_model):
    recognizer = Recognizer(str(random_model), max_new_tokens=5, beam=2)
    results = recognizer.recognize([render_line("a long line of words here")])
    assert len(results) == 1 and len(results[0].text) <= 5


def test_max_new_tokens_capped_by_decoder_positions(random_model):
    recognizer = Recognizer(str(random_model), max_new_tokens=10_000)
    assert recognizer.max_new_tokens < 10_000
    assert len(recognizer.recognize([render_line("x")])) == 1


def test_empty_batch(random_model):
    assert Recognizer(str(random_model)).recognize([]) == []


def test_a_cpu_recognizer_bounds_onednn_kernel_cache_unless_the_user_set_it(random_model, monkeypatch):
    """Left at oneDNN's 1,024 kernels a long run's memory grew past 1.9 GB (native_memory)."""
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    Recognizer(str(random_model), device="cpu")
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == KERNEL_CACHE
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "512")
    Recognizer(str(random_model), device="cpu")
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "512"


def test_unknown_model_is_a_clear_error_at_once(tmp_path, monkeypatch):
    import time

    with pytest.raises(ModelLoadError) as info:
        Recognizer(str(tmp_path / "no-such-model"))
    assert "is not a folder here nor a shipped model (quire-line-v1)" in str(info.value)
    # A hub name that is not there: said in seconds, not after the hub client's retries.
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        Recognizer("quire-no-such-model-x7")
    assert time.monotonic() - started < 30
    assert ("cannot be reached" in str(info.value)  # no internet (CI)
            or "nor a model on the Hugging Face hub" in str(info.value))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        Recognizer("quire-no-such-model-x7")
    # A folder that holds no model at all (a line folder given by mistake) is said to be one.
    with pytest.raises(ModelLoadError, match=r"is a folder but holds no model \(no config.json\)"):
        Recognizer(str(tmp_path))
    # One with a config but no weights still gets the loader's reason.
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="cannot load recognition model"):
        Recognizer(str(tmp_path))


def test_letterbox_keeps_aspect_and_pads_white():
    line = np.zeros((20, 40), np.uint8)  # black block 2:1
    boxed = letterbox(line, 16, 128)
    assert boxed.shape == (16, 128)
    assert (boxed[:, :32] < 128).all() and (boxed[:, 33:] == 255).all()
    squeezed = letterbox(np.zeros((10, 1000), np.uint8), 16, 128)
    assert (squeezed < 128).all()  # too wide: squeezed to fit, never cut off


def test_ctc_reading_scores_the_right_text_above_a_wrong_one(reader):
    import torch

    recognizer = Recognizer(str(reader))
    tok = recognizer.processor.tokenizer
    pixels = recognizer._pixel_values(fit_lines([render_line(MEMORISED[0])] * 2, recognizer.input))
    with torch.inference_mode():
        hidden = recognizer.model.encoder(pixel_values=pixels).last_hidden_state
        right, wrong = (tok(t, add_special_tokens=False).input_ids for t in (MEMORISED[0], "Qxxre 19"))
        width = max(len(right), len(wrong))
        seqs = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in (right, wrong)])
        scores = recognizer._ctc_agreement(hidden, seqs)
    assert scores[0] > 0.5 > scores[1]


def _save_with_processor(model, reader, dest):
    """Save an edited copy of the reader model, with the reader's processor files beside it."""
    model.save_pretrained(dest)
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (reader / name).exists():
            (dest / name).write_bytes((reader / name).read_bytes())


def test_ctc_decoding_reads_and_auto_follows_the_model_config(reader, tmp_path):
    from transformers import VisionEncoderDecoderModel

    crops = [render_line(t) for t in MEMORISED]
    ctc = Recognizer(str(reader), decode="ctc")
    results = ctc.recognize(crops)
    assert [r.text for r in results] == list(MEMORISED)
    assert all(0.5 < r.confidence <= 1.0 for r in results)
    assert Recognizer(str(reader)).decode == "attention"  # no measurement stored: the decoder
    model = VisionEncoderDecoderModel.from_pretrained(reader)
    model.config.quire_decoding = "ctc"  # what training writes when CTC validated better
    _save_with_processor(model, reader, tmp_path)
    assert Recognizer(str(tmp_path)).decode == "ctc"
    with pytest.raises(ModelLoadError, match="decode must be"):
        Recognizer(str(reader), decode="fast")


def test_rescore_decoding_reads_and_scores_unreadable_lines_low(reader):
    crops = [render_line(t) for t in MEMORISED]
    noise = np.random.default_rng(1).integers(0, 255, (40, 300), dtype=np.uint8)
    results = Recognizer(str(reader), decode="rescore").recognize([*crops, noise])
    assert [r.text for r in results[:-1]] == list(MEMORISED)
    assert all(0.5 < r.confidence <= 1.0 for r in results[:-1])
    assert results[-1].confidence < min(r.confidence for r in results[:-1])
    # The decoder scores readings in chunks of similar length: the batch size changes no result.
    small = Recognizer(str(reader), decode="rescore", batch_size=2).recognize([*crops, noise])
    assert [r.text for r in small] == [r.text for r in results]
    assert all(abs(a.confidence - b.confidence) < 1e-4 for a, b in zip(small, results))


def test_a_line_reads_the_same_alone_and_beside_wider_lines(reader):
    # Readings of lines from different encoder batches share decoder passes; each attends only to
    # its own line's frames, so company changes nothing.
    crops = [render_line(t) for t in MEMORISED]
    short = min(range(len(crops)), key=lambda i: crops[i].shape[1])
    recognizer = Recognizer(str(reader), decode="rescore", precision="fp32", retry_below=0.0)
    alone = recognizer.recognize([crops[short]])[0]
    together = recognizer.recognize(crops)[short]
    assert alone.text == together.text == MEMORISED[short]
    assert abs(alone.confidence - together.confidence) < 1e-4


def test_rescore_weighs_a_long_input_group_by_group_with_the_same_result(reader, monkeypatch):
    import pipeline.recognize

    crops = [render_line(t) for t in MEMORISED] * 2
    recognizer = Recognizer(str(reader), decode="rescore", precision="fp32", batch_size=1)
    whole = recognizer.recognize(crops)
    monkeypatch.setattr(pipeline.recognize, "RESCORE_GROUP_LINES", 2)
    grouped = recognizer.recognize(crops)
    assert [r.text for r in grouped] == [r.text for r in whole] == list(MEMORISED) * 2
    assert all(abs(a.confidence - b.confidence) < 1e-4 for a, b in zip(grouped, whole))


def test_bf16_reads_the_same_text_as_fp32(reader):
    crops = [render_line(t) for t in MEMORISED]
    fp32 = Recognizer(str(reader), decode="rescore", precision="fp32").recognize(crops)
    bf16_reader = Recognizer(str(reader), decode="rescore", precision="bf16")
    assert bf16_reader.bf16
    bf16 = bf16_reader.recognize(crops)
    assert [r.text for r in bf16] == [r.text for r in fp32] == list(MEMORISED)
    assert all(abs(a.confidence - b.confidence) < 0.02 for a, b in zip(bf16, fp32))
    assert not Recognizer(str(reader), precision="bf16", quantize=True).bf16  # int8 has no bf16 path
    with pytest.raises(ModelLoadError, match="precision must be"):
        Recognizer(str(reader), precision="fp16")


def test_widened_ctc_head_reads_the_same(reader, tmp_path):
    from transformers import VisionEncoderDecoderModel

    crops = [render_line(t) for t in MEMORISED]
    before = [r.text for r in Recognizer(str(reader), decode="ctc").recognize(crops)]
    model = VisionEncoderDecoderModel.from_pretrained(reader)
    frames = model.encoder.ctc_frames
    model.encoder.widen_ctc_head(2 * frames)
    _save_with_processor(model, reader, tmp_path)
    widened = Recognizer(str(tmp_path), decode="ctc")
    assert widened.model.encoder.ctc_frames == 2 * frames
    assert [r.text for r in widened.recognize(crops)] == before == list(MEMORISED)


def test_two_ctc_frames_per_column_can_spell_a_doubled_letter():
    import torch

    from pipeline.training.model import LineModelConfig, build_line_model

    model, processor = build_line_model(LineModelConfig.tiny(ctc_frames=1))
    encoder, tok = model.encoder, processor.tokenizer
    # Two columns, "ll": CTC needs l, blank, l (three frames), so one frame per column cannot
    # say it and reads "l"; two frames per column can.
    hidden = torch.zeros(1, 2, encoder.config.hidden_size)
    ids = torch.tensor([tok("ll", add_special_tokens=False).input_ids])
    narrow, _ = encoder.ctc_nll(hidden, ids, set(), zero_infinity=False)
    encoder.widen_ctc_head(2)
    assert encoder.ctc_log_probs(hidden).shape[1] == 4
    wide, _ = encoder.ctc_nll(hidden, ids, set(), zero_infinity=False)
    assert torch.isinf(narrow) and torch.isfinite(wide)


def test_a_short_line_is_read_without_the_white_padding_past_it(reader):
    recognizer = Recognizer(str(reader))
    # The tiny model's input is 8:1; "ARCHIVE" cut to its ink nearly fills it, a page number not.
    page_number = fit_lines([render_line("12")], recognizer.input)
    assert recognizer._pixel_values(page_number).shape[-1] < recognizer.input.width
    assert recognizer.recognize([render_line("ARCHIVE")])[0].text == "ARCHIVE"


def _on_grey_paper(line: np.ndarray, height: int, paper: int = 200, ink: int = 70) -> np.ndarray:
    """`line` (black on white) redrawn in grey ink on grey paper, centred in a crop `height` tall."""
    grey = (paper - (255 - line.astype(np.int32)) * (paper - ink) // 255).astype(np.uint8)
    crop = np.full((height, line.shape[1] + 40), paper, np.uint8)
    top = (height - line.shape[0]) // 2
    crop[top : top + line.shape[0], 20 : 20 + line.shape[1]] = grey
    return crop


def test_normalize_ink_whitens_the_paper_and_cuts_the_crop_to_its_ink():
    line = render_line("Quire 1931")
    rows = np.flatnonzero((line < 128).any(axis=1))
    ink_height = rows[-1] - rows[0] + 1
    out = normalize_ink(_on_grey_paper(line, 120))
    assert ink_height <= out.shape[0] <= ink_height * 1.1 + 4  # the tall grey margin is gone
    assert np.median(out) == 255 and out.min() < 20  # paper white, ink black
    assert (out < 128).sum() >= 0.9 * (line < 128).sum()  # no letter lost


def test_normalize_ink_leaves_blank_crops_and_does_not_blow_up_dashes():
    blank = np.full((40, 200), 230, np.uint8)
    blank[20, 50] = 200  # a speck: too little contrast to call ink
    assert (normalize_ink(blank) == blank).all()
    dashes = np.full((40, 200), 255, np.uint8)
    dashes[19:22, 10:190] = 0  # a rule of dashes, 3 px thick
    assert normalize_ink(dashes).shape[0] == 40  # not blown up into bars in the model's input


def test_a_line_in_a_tall_grey_crop_reads_as_the_clean_line(reader):
    """Crops from elsewhere than Quire's segmenter (a folder of scanned lines, a photo) often have
    tall margins and grey paper; cut to the ink, they read as a tight crop does."""
    recognizer = Recognizer(str(reader))
    crops = [_on_grey_paper(render_line(t), 110) for t in MEMORISED]
    assert [r.text for r in recognizer.recognize(crops)] == list(MEMORISED)


def test_trimmed_width_keeps_the_ink_and_a_margin():
    batch = np.full((2, 32, 1024), 255, np.uint8)
    batch[0, :, :100] = 0
    batch[1, 3:9, :300] = 40
    width = trimmed_width(batch)  # a line-height (32) of margin, rounded up to 64 columns
    assert width == 384
    assert (trim_padding(batch)[..., :300] == batch[..., :300]).all()
    batch[1, 0, 1023] = 254  # ink in the last column: nothing may be cut
    assert trim_padding(batch).shape == batch.shape


def test_width_order_sorts_raw_and_letterboxed_lines_by_their_inked_width():
    raw_long, raw_short = render_line("a much longer line"), render_line("short")
    boxed_long, boxed_short = (letterbox(c, 32, 1024) for c in (raw_long, raw_short))
    assert width_order([raw_long, raw_short]) == [1, 0]
    assert width_order([boxed_long, boxed_short]) == [1, 0]  # same shapes: only the ink differs


def test_doubtful_lines_are_read_again_stretched_and_the_surer_reading_kept(reader):
    """Narrow print (here the memorised lines squeezed to 2/3 of their width) reads unsure; a second
    reading stretched wider (1.5x gives back the width the model learnt) is sure, and that is the
    one returned."""
    import cv2

    squeezed = [cv2.resize(c, (round(c.shape[1] * 2 / 3), c.shape[0]), interpolation=cv2.INTER_AREA)
                for c in (render_line(t) for t in MEMORISED)]
    once = Recognizer(str(reader), retry_below=0).recognize(squeezed)
    again = Recognizer(str(reader), retry_below=0.95).recognize(squeezed)
    assert all(r.confidence < 0.95 for r in once)
    assert [r.text for r in again] == list(MEMORISED)
    assert all(a.confidence > 0.95 for a in again)
    # A sure reading is not re-read: the clean lines come back as they were.
    clean = [render_line(t) for t in MEMORISED]
    assert Recognizer(str(reader), retry_below=0.95).recognize(clean) == Recognizer(
        str(reader), retry_below=0).recognize(clean)


def test_a_wider_stretch_is_only_tried_on_lines_the_narrower_one_left_doubtful(reader):
    """Each stretch costs a full reading, so a line made sure at 1.25x is not read again at 1.5x."""
    import cv2

    recognizer = Recognizer(str(reader), retry_below=0.95)
    passes: list[list] = []
    real_read = recognizer._read

    def spying_read(lines):
        results = real_read(lines)
        passes.append(list(results))  # a copy: recognize() updates its results in place
        return results

    recognizer._read = spying_read
    lines = [render_line(t) for t in MEMORISED]
    squeezed = [cv2.resize(c, (round(c.shape[1] * f), c.shape[0]), interpolation=cv2.INTER_AREA)
                for c, f in zip(lines, (0.8, 0.6, 1.0))]
    final = recognizer.recognize(squeezed)
    first = passes[0]
    doubtful = [i for i, r in enumerate(first) if r.confidence < 0.95]
    assert doubtful and len(passes[1]) == len(doubtful)  # 1.25x: every doubtful line
    still = [i for i, r in zip(doubtful, passes[1]) if max(r.confidence, first[i].confidence) < 0.95]
    assert len(passes) == (3 if still else 2)  # 1.5x: only what 1.25x left doubtful
    if still:
        assert len(passes[2]) == len(still)
    assert len(still) < len(doubtful)  # the 0.8x line is sure at 1.25x and skips 1.5x
    assert [r.text for r in final] == list(MEMORISED)


def test_square_input_models_are_never_re_read_stretched(tmp_path):
    from tests.model_fixtures import build_tiny_trocr

    trocr = Recognizer(str(build_tiny_trocr(tmp_path / "trocr")), retry_below=0.95)
    assert trocr.retry_below == 0.0  # TrOCR resizes every crop to a square itself


def test_a_language_model_in_the_model_folder_is_weighed_in_and_leaves_confidence_alone(reader, tmp_path):
    import shutil

    from pipeline import char_lm

    with_lm = shutil.copytree(reader, tmp_path / "with_lm")
    char_lm.build([*MEMORISED, "other words here"], order=4).save(with_lm / char_lm.FILE_NAME)
    crops = [render_line(t) for t in MEMORISED]
    fused = Recognizer(str(with_lm), decode="rescore", precision="fp32")
    plain = Recognizer(str(reader), decode="rescore", precision="fp32")
    assert fused.fusion is not None and plain.fusion is None
    read, plain_read = fused.recognize(crops), plain.recognize(crops)
    assert [r.text for r in read] == list(MEMORISED)
    # The confidence is how sure the eye is, not how likely the text: the same with or without
    # (to the few alignments more that the fused search's wider beam sums; 0.99720 -> 0.99722).
    assert all(abs(a.confidence - b.confidence) < 1e-3 for a, b in zip(read, plain_read))
    assert Recognizer(str(with_lm), decode="rescore", language_model=False).fusion is None
    # The CTC path searches with it too, instead of taking the best path.
    ctc = Recognizer(str(with_lm), decode="ctc", precision="fp32")
    assert ctc.fusion is not None
    assert [r.text for r in ctc.recognize(crops)] == list(MEMORISED)
    assert all(0.9 < r.confidence <= 1.0 for r in ctc.recognize(crops))
    assert Recognizer(str(with_lm), decode="attention").fusion is None  # the decoder generates alone


def test_a_broken_language_model_file_fails_loading_with_its_name(reader, tmp_path):
    import shutil

    from pipeline import char_lm

    broken = shutil.copytree(reader, tmp_path / "broken")
    (broken / char_lm.FILE_NAME).write_bytes(b"\x00" * 10)
    with pytest.raises(ModelLoadError, match="char_lm.npz: not a Quire character language model"):
        Recognizer(str(broken), decode="rescore")
