"""The CUDA path (bf16 weights, batched generate): runs only where a GPU is present."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_cuda_bf16_reads_like_cpu(tmp_path):
    from pipeline.recognize import Recognizer
    from tests.model_fixtures import MEMORISED, build_memorising_model, render_line

    model = build_memorising_model(tmp_path / "reader")
    crops = [render_line(t) for t in MEMORISED] * 20
    gpu = Recognizer(str(model), device="cuda", batch_size=16)
    assert next(gpu.model.parameters()).dtype == torch.bfloat16
    cpu = Recognizer(str(model), device="cpu")
    assert [r.text for r in gpu.recognize(crops)] == [r.text for r in cpu.recognize(crops)]


def test_cuda_fp32_and_rescore_read_like_cpu(tmp_path):
    from pipeline.recognize import Recognizer
    from tests.model_fixtures import MEMORISED, build_memorising_model, render_line

    model = build_memorising_model(tmp_path / "reader")
    crops = [render_line(t) for t in MEMORISED] * 20
    fp32 = Recognizer(str(model), device="cuda", precision="fp32", decode="rescore")
    assert next(fp32.model.parameters()).dtype == torch.float32 and not fp32.bf16
    bf16 = Recognizer(str(model), device="cuda", decode="rescore")
    cpu = Recognizer(str(model), device="cpu", decode="rescore")
    expected = [r.text for r in cpu.recognize(crops)]
    assert [r.text for r in fp32.recognize(crops)] == expected
    assert [r.text for r in bf16.recognize(crops)] == expected
