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


def prefix_beam_search(
    frames: Sequence[Frame], *, beam: int = 8
) -> list[tuple[tuple[int, ...], float]]:
    """Decode one line's frames (from `sparse_frames`).

    Returns up to `beam` (token ids, log-probability) pairs, best first.

    Prefixes are nodes of a trie (an int each, found from parent and character), not tuples that
    would be copied and hashed whole at every character. Probabilities are added, not
    log-probabilities: after each frame they are divided by the best prefix's (its log kept in
    `scale`), so they cannot underflow. Together 1.25x faster than tuples in log space, with the
    same readings (694 lines, docs/BENCHMARKS.md).
    """
    parent, token_of = [-1], [-1]  # the trie: node 0 is the empty prefix
    child: dict[tuple[int, int], int] = {}
    # Each prefix keeps two probabilities: ending in blank, and ending in its last character.
    beams: dict[int, list[float]] = {0: [1.0, 0.0]}
    scale = 0.0
    for lp_blank, lp_chars in frames:
        p_blank = math.exp(lp_blank)
        chars = {token: math.exp(lp) for token, lp in lp_chars.items()}
        if lp_blank >= SURE_BLANK or not chars:
            # A blank can only close a prefix; its last character may be held over, no other added.
            beams = {
                node: [(b + nb) * p_blank, nb * chars.get(token_of[node], 0.0)]
                for node, (b, nb) in beams.items()
            }
        else:
            grown: dict[int, list[float]] = {}
            for node, (b, nb) in beams.items():
                total = b + nb
                last = token_of[node]
                slot = grown.get(node)
                if slot is None:
                    slot = grown[node] = [0.0, 0.0]
                slot[0] += total * p_blank
                if last in chars:
                    slot[1] += nb * chars[last]  # the last character held over another frame
                for token, p in chars.items():
                    longer = child.get((node, token))
                    if longer is None:
                        longer = child[node, token] = len(parent)
                        parent.append(node)
                        token_of.append(token)
                    slot = grown.get(longer)
                    if slot is None:
                        slot = grown[longer] = [0.0, 0.0]
                    # A repeated character needs a blank between the two, so only `b` can extend.
                    slot[1] += (b if token == last else total) * p
            ranked = sorted(grown.items(), key=lambda item: item[1][0] + item[1][1], reverse=True)
            beams = dict(ranked[:beam])
        best = max(b + nb for b, nb in beams.values())
        if best > 0.0:  # 0: every prefix has become impossible, and stays so
            scale += math.log(best)
            for slot in beams.values():
                slot[0] /= best
                slot[1] /= best
    scored = [(_spell(node, parent, token_of), math.log(b + nb) + scale if b + nb > 0.0 else -math.inf)
              for node, (b, nb) in beams.items()]
    scored.sort(key=lambda item: item[1], reverse=True)
    return scored


def _spell(node: int, parent: list[int], token_of: list[int]) -> tuple[int, ...]:
    """A trie node's token ids, first to last."""
    tokens = []
    while node > 0:
        tokens.append(token_of[node])
        node = parent[node]
    return tuple(reversed(tokens))
