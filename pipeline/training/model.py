"""Build Quire's line recognition model: a conv+transformer line encoder with a CTC head, a TrOCR char decoder."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    TrOCRConfig,
    TrOCRForCausalLM,
    TrOCRProcessor,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTImageProcessor,
)

from pipeline.line_encoder import LineEncoder, LineEncoderConfig

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

_ASCII = "".join(chr(c) for c in range(32, 127))
# Characters that turn up in English/Western European letters, journals and receipts.
_EXTRA = (
    "£€¥¢°§¶©®™±×÷µ¼½¾²³¹ªº«»¿¡·•…–—‘’‚“”„†‡′″"
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿœß"
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝŒ"
)
CHARSET: str = _ASCII + "".join(dict.fromkeys(c for c in _EXTRA if c not in _ASCII))


def build_char_tokenizer(charset: str = CHARSET) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one id per char (space included), exact decode."""
    chars = list(dict.fromkeys(charset))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Split into single characters and keep the space as a token of its own.
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    # Fuse concatenates tokens; the default WordLevel decode would join them with spaces.
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    return tok


@dataclass
class LineModelConfig:
    """Sizes of the line model; height x width is the letterboxed input."""

    height: int = 32
    width: int = 1024
    # Narrow early stages: the full-resolution convolutions dominate CPU time (measured: stem
    # (32, 64, 128, 192, 256) trains at half the speed for little gain in a CPU budget).
    stem_channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    stem_pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (2, 1), (2, 1))
    enc_layers: int = 2
    enc_dim: int = 256
    enc_heads: int = 4
    enc_ffn: int = 1024
    dec_layers: int = 3
    dec_dim: int = 256
    dec_heads: int = 4
    dec_ffn: int = 1024
    max_length: int = 160
    dropout: float = 0.1
    ctc: bool = True
    ctc_frames: int = 2  # CTC frames per encoder token (see LineEncoderConfig.ctc_frames_per_token)
    charset: str = field(default=CHARSET, repr=False)

    @classmethod
    def preset(cls, size: str = "small", **overrides: Any) -> LineModelConfig:
        """The sizes `quire train --model new --size` builds (see MODEL_SIZES)."""
        if size not in MODEL_SIZES:
            raise ValueError(f"--size: {size!r} is not one of {', '.join(MODEL_SIZES)}")
        return cls(**{**MODEL_SIZES[size], **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> LineModelConfig:
        """A model small enough for unit tests (builds and runs in well under a second)."""
        sizes: dict[str, Any] = {
            "height": 16,
            "width": 128,
            "stem_channels": (8, 16, 32, 32),
            "stem_pools": ((2, 2), (2, 2), (2, 1), (2, 1)),  # 32 columns: room for CTC on 20 chars
            "enc_layers": 1,
            "enc_dim": 32,
            "enc_heads": 2,
            "enc_ffn": 64,
            "dec_layers": 1,
            "dec_dim": 32,
            "dec_heads": 2,
            "dec_ffn": 64,
            "max_length": 48,
        }
        return cls(**{**sizes, **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("charset")
        return d


# small: the shipped model's sizes, chosen to train and read fast on a few CPU cores.
# mid: small's layers on lines read 48 px tall (the last pool takes 3 rows), so every weight of a
# small model fits it: `--size mid --model quire-line-v1` grows the shipped model instead of
# starting from nothing. Only the stem's convolutions see more pixels.
# base: for a GPU run: lines read 48 px tall (cursive's small letters get half again as many
# pixels), twice the encoder layers, a wider stem and a deeper decoder: 2.3x the parameters
# (12.8M, 26 MB saved in bf16), slower on a CPU (measured in docs/BENCHMARKS.md, "Model sizes").
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "small": {},
    "mid": {
        "height": 48,
        "stem_pools": ((2, 2), (2, 2), (2, 2), (2, 1), (3, 1)),
    },
    "base": {
        "height": 48,
        "stem_channels": (32, 64, 128, 192, 320),
        "stem_pools": ((2, 2), (2, 2), (2, 2), (2, 1), (3, 1)),
        "enc_layers": 4,
        "enc_dim": 320,
        "enc_heads": 5,
        "enc_ffn": 1280,
        "dec_layers": 4,
        "dec_dim": 320,
        "dec_heads": 5,
        "dec_ffn": 1280,
    },
}


def build_processor(
    cfg: LineModelConfig, tokenizer: PreTrainedTokenizerFast | None = None
) -> TrOCRProcessor:
    """Processor: gray line -> [-1, 1] tensor of size height x width; char tokenizer."""
    image_processor = ViTImageProcessor(
        do_resize=True,
        size={"height": cfg.height, "width": cfg.width},
        resample=2,  # bilinear; the recognizer letterboxes first so this is normally a no-op
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5],
        image_std=[0.5],
        do_convert_rgb=False,
    )
    return TrOCRProcessor(
        image_processor=image_processor, tokenizer=tokenizer or build_char_tokenizer(cfg.charset)
    )


def build_line_model(
    cfg: LineModelConfig | None = None,
) -> tuple[VisionEncoderDecoderModel, TrOCRProcessor]:
    """A randomly initialised VisionEncoderDecoderModel plus its processor."""
    cfg = cfg or LineModelConfig()
    if cfg.width < 4 * cfg.height:
        raise ValueError(
            f"line model must be at least 4x wider than tall, got {cfg.height}x{cfg.width}"
        )
    processor = build_processor(cfg)
    tok = processor.tokenizer
    enc_cfg = LineEncoderConfig(
        num_channels=1,
        image_height=cfg.height,
        stem_channels=cfg.stem_channels,
        stem_pools=cfg.stem_pools,
        hidden_size=cfg.enc_dim,
        num_hidden_layers=cfg.enc_layers,
        num_attention_heads=cfg.enc_heads,
        intermediate_size=cfg.enc_ffn,
        max_tokens=max(64, 2 * cfg.width // _width_stride(cfg)),
        dropout=cfg.dropout,
        ctc_vocab_size=len(tok) if cfg.ctc else 0,
        ctc_blank_id=tok.pad_token_id,  # <pad> never occurs inside a label, so it can be the blank
        ctc_frames_per_token=cfg.ctc_frames,
    )
    dec_cfg = TrOCRConfig(
        vocab_size=len(tok),
        d_model=cfg.dec_dim,
        decoder_layers=cfg.dec_layers,
        decoder_attention_heads=cfg.dec_heads,
        decoder_ffn_dim=cfg.dec_ffn,
        max_position_embeddings=cfg.max_length + 8,
        dropout=cfg.dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="gelu",
        use_learned_position_embeddings=True,
        layernorm_embedding=True,
        scale_embedding=False,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.bos_token_id,
    )
    # Generic PretrainedConfig flags, not in TrOCRConfig's signature: a decoder that cross-attends.
    dec_cfg.is_decoder = True
    dec_cfg.add_cross_attention = True
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc_cfg, dec_cfg)
    ids = {
        "decoder_start_token_id": tok.bos_token_id,
        "bos_token_id": tok.bos_token_id,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    for key, value in ids.items():
        setattr(config, key, value)
    config.vocab_size = len(tok)
    model = VisionEncoderDecoderModel(
        config=config,
        encoder=LineEncoder(enc_cfg),
        decoder=TrOCRForCausalLM(dec_cfg),
    )
    gen = model.generation_config
    for key, value in ids.items():
        setattr(gen, key, value)
    gen.max_length = cfg.max_length
    gen.num_beams = 1
    gen.do_sample = False
    return model, processor


def _width_stride(cfg: LineModelConfig) -> int:
    return math.prod(pw for _, pw in cfg.stem_pools)


def count_parameters(model: Any) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())
