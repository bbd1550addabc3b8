"""Quire's line encoder: a small convolutional stem, then a few transformer layers, with a CTC head.

Why not a plain ViT: trained from scratch on a CPU budget, a ViT must learn locality from data
and barely starts reading after 100,000 lines. Convolutions bring that prior for free, and the
CTC head gives the encoder a per-column character signal while training, so the decoder's
cross-attention has something sensible to attend to early. At inference the CTC head also
provides an independent reading used to score the decoder's text (see pipeline.recognize).

The classes register themselves with transformers' Auto* factories on import, so a
VisionEncoderDecoderModel with this encoder saves and loads through the usual
`from_pretrained` once `pipeline.line_encoder` is imported.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

MODEL_TYPE = "quire_line_encoder"


class LineEncoderConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        num_channels: int = 1,
        image_height: int = 32,
        stem_channels: tuple[int, ...] = (16, 32, 64, 128, 256),
        # Pooling after each stem stage as (height, width): 32 px tall lines end 1 px tall,
        # one token per 8 px column, so a 1024 px line gives 128 tokens.
        stem_pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (2, 1), (2, 1)),
        hidden_size: int = 256,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 1024,
        max_tokens: int = 512,
        dropout: float = 0.1,
        ctc_vocab_size: int = 0,  # 0: no CTC head; else the tokenizer's size, blank = pad id
        ctc_blank_id: int = 0,
        # CTC frames per encoder token. CTC needs a blank between two equal characters, so with
        # one frame per 8 px column a tight "ll" or "tt" collapses to one letter; two frames
        # per token let a column emit two characters at the cost of a wider output layer only.
        ctc_frames_per_token: int = 1,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_channels = num_channels
        self.image_height = image_height
        self.stem_channels = list(stem_channels)
        self.stem_pools = [list(p) for p in stem_pools]
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_tokens = max_tokens
        self.dropout = dropout
        self.ctc_vocab_size = ctc_vocab_size
        self.ctc_blank_id = ctc_blank_id
        self.ctc_frames_per_token = ctc_frames_per_token


class LineEncoder(PreTrainedModel):
    config_class = LineEncoderConfig
    base_model_prefix = "line_encoder"
    main_input_name = "pixel_values"
    # Convolutions and learnt positions up to max_tokens: a line may be any width up to the
    # processor's, so recognition and training cut off the white padding (see line_image.trim_padding).
    reads_any_width = True

    def __init__(self, config: LineEncoderConfig) -> None:
        super().__init__(config)
        layers: list[nn.Module] = []
        channels = config.num_channels
        for out, (ph, pw) in zip(config.stem_channels, config.stem_pools):
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d((ph, pw)),
            ]
            channels = out
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Linear(channels, config.hidden_size)
        self.positions = nn.Embedding(config.max_tokens, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size)
        self.ctc_head = (
            nn.Linear(config.hidden_size, config.ctc_vocab_size * config.ctc_frames_per_token)
            if config.ctc_vocab_size
            else None
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.trunc_normal_(module.weight, std=0.02)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple[torch.Tensor] | tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        # The tuple form (return_dict=False) is transformers': the last states, then each layer's.
        features = self.stem(pixel_values)  # B, C, H', W'
        tokens = features.mean(dim=2).transpose(1, 2)  # any height left is averaged: B, W', C
        if tokens.shape[1] > self.config.max_tokens:
            raise ValueError(
                f"line is {tokens.shape[1]} tokens wide; this encoder takes at most "
                f"{self.config.max_tokens}"
            )
        x = self.proj(tokens) + self.positions.weight[: tokens.shape[1]]
        x = self.dropout(x)
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self.norm(x)
        if return_dict is False:
            return (x,) if hidden_states is None else (x, tuple(hidden_states))
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
        )

    def ctc_log_probs(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """Per-frame log-probabilities over the vocabulary (blank = ctc_blank_id): B, T x frames, V."""
        if self.ctc_head is None:
            raise ValueError("this encoder was built without a CTC head")
        logits = self.ctc_head(last_hidden_state).float()
        b, t, _ = logits.shape
        return logits.reshape(b, t * self.ctc_frames, self.config.ctc_vocab_size).log_softmax(-1)

    @property
    def ctc_frames(self) -> int:
        return int(self.config.ctc_frames_per_token)

    @torch.no_grad()
    def widen_ctc_head(self, frames: int) -> None:
        """Give each token `frames` CTC frames, each starting as a copy of the current head.

        Copies read exactly as before (best-path decoding merges equal neighbouring frames), so a
        trained model keeps its accuracy and fine-tuning only has to learn where to split.
        """
        old = self.ctc_head
        if old is None or frames % self.ctc_frames:
            raise ValueError(f"cannot widen a CTC head of {self.ctc_frames} frames to {frames}")
        repeat = frames // self.ctc_frames
        vocab = self.config.ctc_vocab_size
        new = nn.Linear(old.in_features, vocab * frames).to(old.weight.device, old.weight.dtype)
        # Rows are frame-major within a token: [frame 0 vocab | frame 1 vocab | ...].
        w = old.weight.view(self.ctc_frames, vocab, -1).repeat_interleave(repeat, dim=0)
        b = old.bias.view(self.ctc_frames, vocab).repeat_interleave(repeat, dim=0)
        new.weight.copy_(w.reshape(vocab * frames, -1))
        new.bias.copy_(b.reshape(-1))
        self.ctc_head = new
        self.config.ctc_frames_per_token = frames

    def ctc_nll(
        self,
        last_hidden_state: torch.Tensor,
        ids: torch.Tensor,
        skip: set[int],
        *,
        reduction: str = "mean",
        zero_infinity: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC negative log-likelihood of each row of `ids` (B, L) under the CTC head.

        Negative ids (label padding) and those in `skip` (special tokens) are not characters.
        Returns the loss, reduced as torch's ctc_loss does, and each row's character count.
        """
        log_probs = self.ctc_log_probs(last_hidden_state)
        keep = ids >= 0
        for token in skip:
            keep &= ids != token
        lengths = keep.sum(1)
        columns = torch.full((ids.shape[0],), log_probs.shape[1], dtype=torch.long, device=ids.device)
        loss = nn.functional.ctc_loss(
            log_probs.transpose(0, 1),
            ids[keep],
            columns,
            lengths,
            blank=self.config.ctc_blank_id,
            reduction=reduction,
            zero_infinity=zero_infinity,
        )
        return loss, lengths

    def ctc_read(self, pixel_values: torch.Tensor, tokenizer) -> list[tuple[str, float]]:
        """Read lines with the CTC head alone (best path, one pass): (text, confidence) each."""
        log_probs = self.ctc_log_probs(self(pixel_values=pixel_values).last_hidden_state)
        decoded = ctc_greedy(log_probs, self.config.ctc_blank_id)
        texts = tokenizer.batch_decode([ids for ids, _ in decoded], skip_special_tokens=True)
        return [(text, confidence) for text, (_, confidence) in zip(texts, decoded)]


def ctc_greedy(log_probs: torch.Tensor, blank: int) -> list[tuple[list[int], float]]:
    """Best-path CTC decoding: per line, the token ids and a confidence in [0, 1].

    The confidence is the geometric mean of each emitted character's peak probability, so one
    doubtful character in a short line pulls it down as much as it should.
    """
    best_lp, best = log_probs.max(-1)  # B, T
    out: list[tuple[list[int], float]] = []
    for ids, lps in zip(best.tolist(), best_lp.tolist()):
        tokens: list[int] = []
        peaks: list[float] = []
        prev = blank
        for token, lp in zip(ids, lps):
            if token != blank and token != prev:
                tokens.append(token)
                peaks.append(lp)
            elif token != blank and token == prev:
                peaks[-1] = max(peaks[-1], lp)  # the same character held over several columns
            prev = token
        # A line read as empty is scored by how sure the model is that it is blank.
        score = sum(peaks) / len(peaks) if peaks else sum(lps) / max(1, len(lps))
        out.append((tokens, math.exp(score)))
    return out


AutoConfig.register(MODEL_TYPE, LineEncoderConfig, exist_ok=True)
AutoModel.register(LineEncoderConfig, LineEncoder, exist_ok=True)
