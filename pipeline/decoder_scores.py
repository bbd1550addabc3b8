"""The decoder's log-likelihood of given texts (teacher-forced), for picking among a CTC head's readings.

Each line brings several rival readings ("RM" against "RN") that differ in a character or two. A
pass costs about 5 ms on 2 CPU cores before it computes anything, and computes every row out to its
longest: so readings of all the lines read together go in few passes, in chunks of like length
(a pass over readings of 5 to 59 characters took 52 ms, against 63 ms as one fixed chunk). Computing
each line's cross-attention keys and values once for all its readings, through a filled cache,
measured no faster: the gathers cost what the projections saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Padding positions a pass may compute before a shorter chunk of readings pays for its own pass's
# fixed cost (about 5 ms on 2 CPU cores); chosen among 0-192 on four mixes of lengths (BENCHMARKS).
PAD_BUDGET = 96


def length_chunks(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of `lengths` in chunks of up to `batch_size`, shortest first; a new chunk starts
    where padding every row to the chunk's longest would cost more than PAD_BUDGET positions."""
    chunks: list[list[int]] = []
    used = 0  # positions the current chunk's rows need
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        # Sorted, so `i` would be the chunk's longest: every row would be padded to it.
        padding = lengths[i] * (len(chunks[-1]) + 1) - (used + lengths[i]) if chunks else 0
        if chunks and len(chunks[-1]) < batch_size and padding <= PAD_BUDGET:
            chunks[-1].append(i)
            used += lengths[i]
            continue
        chunks.append([i])
        used = lengths[i]
    return chunks


def decoder_log_likelihoods(
    model: Any, states: Sequence[Any], owners: Sequence[int], texts: Sequence[Sequence[int]],
    batch_size: int,
) -> list[float]:
    """The decoder's log-probability of each text (EOS included), read off `states[owners[i]]`,
    the encoder's last hidden state (frames, width) of one line.

    Lines of different widths share a pass: each row attends only to its own line's frames.
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence
    from transformers.models.vision_encoder_decoder.modeling_vision_encoder_decoder import (
        shift_tokens_right,
    )

    config = model.config
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    # As VisionEncoderDecoderModel.forward does: an encoder narrower than the decoder is projected.
    project = (model.encoder.config.hidden_size != model.decoder.config.hidden_size
               and getattr(model.decoder.config, "cross_attention_hidden_size", None) is None)
    scores = [0.0] * len(texts)
    for chunk in length_chunks([len(t) + 1 for t in texts], batch_size):
        longest = len(texts[chunk[-1]]) + 1
        device = states[owners[chunk[0]]].device
        targets = torch.full((len(chunk), longest), -100, dtype=torch.long)
        for row, i in enumerate(chunk):
            targets[row, : len(texts[i]) + 1] = torch.tensor([*texts[i], eos])
        targets = targets.to(device)
        lines = [states[owners[i]] for i in chunk]
        frames = torch.tensor([len(line) for line in lines], device=device)
        encoded = pad_sequence(lines, batch_first=True)
        mask = None
        if frames.min() < encoded.shape[1]:
            mask = (torch.arange(encoded.shape[1], device=device) < frames[:, None]).long()
        with torch.inference_mode():
            if project:
                encoded = model.enc_to_dec_proj(encoded)
            # The decoder reads the text shifted right after a start token, as in training; the
            # causal mask keeps padding out of the positions read.
            out = model.decoder(
                input_ids=shift_tokens_right(targets, config.pad_token_id, config.decoder_start_token_id),
                encoder_hidden_states=encoded,
                encoder_attention_mask=mask,
                use_cache=False,
            )
            log_probs = out.logits.float().log_softmax(-1)
            picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            picked = picked.masked_fill(targets == -100, 0.0)
        for i, score in zip(chunk, picked.sum(-1).cpu().tolist()):
            scores[i] = score
    return scores
