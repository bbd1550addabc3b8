"""Models built inside the tests: the hub is out of reach, so tests make their own checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.model_input import encoder_channels, fit_lines, input_shape, pixel_values

# Lines the memorising model learns to read; tests check these come out verbatim.
MEMORISED = ("Quire 1931", "ARCHIVE", "St. Anne's, p. 12")


def render_line(text: str, height: int = 40) -> np.ndarray:
    """A black-on-white line image of `text` in a TrueType font (DejaVu when installed)."""
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", int(height * 0.7))
    except OSError:
        font = ImageFont.load_default()
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("L", (right - left + 16, height), 255)
    ImageDraw.Draw(image).text((8 - left, (height - (bottom - top)) // 2 - top), text, font=font, fill=0)
    return np.asarray(image)


def build_random_model(path: Path) -> Path:
    """A tiny, randomly initialised line model saved in the Hugging Face format."""
    from pipeline.training.model import LineModelConfig, build_line_model

    model, processor = build_line_model(LineModelConfig.tiny())
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_memorising_model(
    path: Path, crops: list[np.ndarray] | None = None, texts: tuple[str, ...] = MEMORISED,
    steps: int = 800,
) -> Path:
    """A tiny model trained until it reads the given line crops as `texts`, so tests can check
    real text coming out. It goes through the same save/from_pretrained/generate path as a real
    checkpoint. Without crops, MEMORISED rendered by render_line is learnt.
    """
    import torch

    from pipeline.training.model import LineModelConfig, build_line_model
    from pipeline.training.optimization import training_loss

    torch.manual_seed(0)
    cfg = LineModelConfig.tiny()
    model, processor = build_line_model(cfg)
    crops = crops if crops is not None else [render_line(t) for t in texts]
    shape = input_shape(processor, encoder_channels(model))
    pixels = pixel_values(fit_lines(crops, shape), shape, processor)  # full width, as recognition without cutting
    tokenizer = processor.tokenizer
    ids = [tokenizer(t).input_ids + [tokenizer.eos_token_id] for t in texts]
    width = max(len(i) for i in ids)
    labels = torch.tensor([i + [-100] * (width - len(i)) for i in ids])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    specials = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}
    for _ in range(steps):
        # The same loss as `quire train`: decoder cross-entropy plus the encoder's CTC reading,
        # which the recognizer's confidence relies on.
        loss, parts = training_loss(model, pixels, labels, 0.5, specials)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if parts["ce"] < 0.01 and parts["ctc"] < 0.01:
            break
    model.eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


# A letter page whose lines a memorising model is trained to read, for end-to-end tests.
LETTER_LINES = ("Quire County Archives", "12 March 1931", "Dear Mr. Holloway,", "Yours faithfully,")


def make_letter_page(dpi: int = 150) -> np.ndarray:
    """A white letter-size page with LETTER_LINES in a serif-less TrueType font, gray uint8."""
    width, height = int(8.5 * dpi), int(11 * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", int(dpi * 0.17))
    except OSError:
        font = ImageFont.load_default()
    for i, text in enumerate(LETTER_LINES):
        draw.text((int(dpi * 1.0), int(dpi * (1.0 + 0.45 * i))), text, font=font, fill=0)
    return np.asarray(page)


def build_letter_reader(path: Path, pdf: Path, dpi: int = 150) -> Path:
    """Train a tiny model on the line crops Quire itself cuts from `pdf`, labelled LETTER_LINES."""
    from pipeline.config import RenderOptions
    from pipeline.render import render_pages
    from pipeline.segment import segment_page

    [page] = list(render_pages(pdf, RenderOptions(dpi=dpi)))
    seg = segment_page(page.image, dpi=page.dpi)
    assert len(seg.crops) == len(LETTER_LINES), f"segmenter found {len(seg.crops)} lines"
    return build_memorising_model(path, list(seg.crops), LETTER_LINES)


def build_tiny_trocr(path: Path) -> Path:
    """A randomly initialised model with TrOCR's architecture (ViT encoder on RGB squares,
    TrOCR decoder), saved the way microsoft/trocr-* checkpoints are."""
    from transformers import (
        TrOCRConfig,
        TrOCRForCausalLM,
        TrOCRProcessor,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    from pipeline.training.model import build_char_tokenizer

    tok = build_char_tokenizer()
    enc_cfg = ViTConfig(
        image_size=64, patch_size=16, num_channels=3, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64,
    )
    dec_cfg = TrOCRConfig(
        vocab_size=len(tok), d_model=32, decoder_layers=1, decoder_attention_heads=2,
        decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.bos_token_id,
    )
    dec_cfg.is_decoder = True
    dec_cfg.add_cross_attention = True
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc_cfg, dec_cfg)
    config.decoder_start_token_id = tok.bos_token_id
    config.pad_token_id = tok.pad_token_id
    config.eos_token_id = tok.eos_token_id
    model = VisionEncoderDecoderModel(
        config=config, encoder=ViTModel(enc_cfg, add_pooling_layer=False),
        decoder=TrOCRForCausalLM(dec_cfg),
    )
    model.generation_config.max_length = 40
    image_processor = ViTImageProcessor(size={"height": 64, "width": 64})
    model.save_pretrained(path)
    TrOCRProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(path)
    return path
