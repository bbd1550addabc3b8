"""CTC prefix beam search: the N most likely texts under a CTC head, each with its log-probability.

Best-path decoding keeps one reading per line; rescoring with the decoder needs a few rivals
("RM" against "RN"), and their CTC scores summed over every alignment, not just the best one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

NEG_INF = -math.inf
# Characters under this log-probability in a frame cannot lift a prefix into the beam, so they
# are left out of the frames the search reads (a CTC head's frames are nearly all blank: a line
# of 256 frames keeps a few hundred of its 51,200 scores). A reading that needs such a character
# scores about 7 nats under one without it, past the 3 nats within which the rescore weighs rivals
# at all; 1e-3 rather than 1e-4 left every best reading the same on 894 real and synthetic lines
# and made the search 1.45x faster (docs/BENCHMARKS.md).
PRUNE = math.log(1e-3)
# Frames where blank is this sure carry every prefix over unchanged (a blank can only close a
# prefix); most frames of a line are such gaps, and skipping their inner loop is most of the speed.
SURE_BLANK = math.log(0.999)

# One frame: blank's log-probability and each plausible character's.
Frame = tuple[float, Mapping[int, float]]


def sparse_frames(log_probs: torch.Tensor, blank: int, skip: Iterable[int] = ()) -> list[list[Frame]]:
    """Per line of a (B, T, V) tensor, its frames with characters above PRUNE only.

    Runs of frames where no character reaches PRUNE are merged into one frame (their blank
    log-probabilities summed): the search can only close prefixes there. Tokens in `skip`
    (special tokens other than blank) are dropped.
    """
    plausible = log_probs >= PRUNE
    plausible[..., blank] = False
    for token in skip:
        plausible[..., token] = False
    lines, frames, tokens = plausible.nonzero(as_tuple=True)
    chars: list[list[dict[int, float]]] = [[{} for _ in range(log_probs.shape[1])] for _ in range(log_probs.shape[0])]
    for line, frame, token, lp in zip(
        lines.tolist(), frames.tolist(), tokens.tolist(), log_probs[plausible].tolist()
    ):
        chars[line][frame][token] = lp
    out: list[list[Frame]] = []
    for blanks, line_chars in zip(log_probs[..., blank].tolist(), chars):
        merged: list[Frame] = []
        for p_blank, frame_chars in zip(blanks, line_chars):
            if not frame_chars and merged and not merged[-1][1]:
                merged[-1] = (merged[-1][0] + p_blank, frame_chars)
            else:
                merged.append((p_blank, frame_chars))
        out.append(merged)
    return out


def _add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without leaving log space."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))


def _bump(grown: dict, prefix: tuple[int, ...], which: int, value: float) -> None:
    """Add `value` to one of a prefix's two scores (0: ends in blank, 1: ends in a character)."""
    slot = grown.setdefault(prefix, [NEG_INF, NEG_INF])
    slot[which] = _add(slot[which], value)


def prefix_beam_search(
    frames: Sequence[Frame], *, beam: int = 8
) -> list[tuple[tuple[int, ...], float]]:
    """Decode one line's frames (from `sparse_frames`).

    Returns up to `beam` (token ids, log-probability) pairs, best first.
    """
    # Each prefix keeps two scores: ending in blank, and ending in its last character.
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for p_blank, chars in frames:
        if p_blank >= SURE_BLANK or not chars:
            beams = {
                prefix: (
                    _add(b, nb) + p_blank,
                    nb + chars.get(prefix[-1], NEG_INF) if prefix else NEG_INF,
                )
                for prefix, (b, nb) in beams.items()
            }
            continue
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (b, nb) in beams.items():
            total = _add(b, nb)
            _bump(grown, prefix, 0, total + p_blank)
            last = prefix[-1] if prefix else None
            if last in chars:
                _bump(grown, prefix, 1, nb + chars[last])  # the last character held over another frame
            for token, lp in chars.items():
                # A repeated character needs a blank between the two, so only `b` can extend.
                _bump(grown, prefix + (token,), 1, (b if token == last else total) + lp)
        ranked = sorted(grown.items(), key=lambda item: _add(*item[1]), reverse=True)[:beam]
        beams = {prefix: (b, nb) for prefix, (b, nb) in ranked}
    scored = [(prefix, _add(b, nb)) for prefix, (b, nb) in beams.items()]
    scored.sort(key=lambda item: item[1], reverse=True)
    return scored
