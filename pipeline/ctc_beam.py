"""CTC prefix beam search: the N most likely texts under a CTC head, each with its log-probability.

Best-path decoding keeps one reading per line; rescoring with the decoder needs a few rivals
("RM" against "RN"), and their CTC scores summed over every alignment, not just the best one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

NEG_INF = -math.inf
# Frames where blank is this sure carry every prefix over unchanged (a blank can only close a
# prefix); most frames of a line are such gaps, and skipping their inner loop is most of the speed.
SURE_BLANK = math.log(0.999)
# Characters under this log-probability in a frame cannot lift a prefix into the beam.
PRUNE = math.log(1e-4)


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
    log_probs: Sequence[Sequence[float]],
    blank: int,
    *,
    beam: int = 8,
    skip: frozenset[int] = frozenset(),
) -> list[tuple[tuple[int, ...], float]]:
    """Decode one line's frames (T rows of V log-probabilities).

    Returns up to `beam` (token ids, log-probability) pairs, best first. Tokens in `skip`
    (special tokens other than blank) are never emitted.
    """
    # Each prefix keeps two scores: ending in blank, and ending in its last character.
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame in log_probs:
        p_blank = frame[blank]
        if p_blank >= SURE_BLANK:
            beams = {
                prefix: (_add(b, nb) + p_blank, NEG_INF if not prefix else nb + frame[prefix[-1]])
                for prefix, (b, nb) in beams.items()
            }
            continue
        candidates = [t for t, lp in enumerate(frame) if lp >= PRUNE and t != blank and t not in skip]
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (b, nb) in beams.items():
            total = _add(b, nb)
            _bump(grown, prefix, 0, total + p_blank)
            last = prefix[-1] if prefix else None
            if last is not None:
                _bump(grown, prefix, 1, nb + frame[last])  # the last character held over another frame
            for token in candidates:
                lp = frame[token]
                # A repeated character needs a blank between the two, so only `b` can extend.
                _bump(grown, prefix + (token,), 1, (b if token == last else total) + lp)
        ranked = sorted(grown.items(), key=lambda item: _add(*item[1]), reverse=True)[:beam]
        beams = {prefix: (b, nb) for prefix, (b, nb) in ranked}
    scored = [(prefix, _add(b, nb)) for prefix, (b, nb) in beams.items()]
    scored.sort(key=lambda item: item[1], reverse=True)
    return scored
