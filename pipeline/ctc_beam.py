"""CTC prefix beam search: the N most likely texts under a CTC head, each with its log-probability.

Best-path decoding keeps one reading per line; rescoring with the decoder needs a few rivals
("RM" against "RN"), and their CTC scores summed over every alignment, not just the best one.

The search is compiled with numba: in pure Python it was a third of the time of reading a
handwritten line (many frames in doubt, each grown and ranked prefix by prefix); compiled, it
costs a few milliseconds per batch (docs/BENCHMARKS.md, session 23). Only the first run on a
machine pays the compile (about 5 s): see `pipeline.compiled`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline import char_lm
from pipeline.compiled import compiled

if TYPE_CHECKING:
    import torch

# Characters under this log-probability in a frame cannot lift a prefix into the beam, so they
# are left out of the frames the search reads (a CTC head's frames are nearly all blank). A
# reading that needs such a character scores about 7 nats under one without it, past the 3 nats
# within which the rescore weighs rivals at all; 1e-3 rather than 1e-4 left every best reading the
# same on 894 real and synthetic lines and made the search 1.45x faster (docs/BENCHMARKS.md).
PRUNE = math.log(1e-3)
# Frames where blank is this sure carry every prefix over unchanged (a blank can only close a
# prefix): most frames of a line are such gaps, and no prefix is grown or ranked in them.
SURE_BLANK = math.log(0.999)

# A reading: token ids, the log-probability of the text summed over its alignments, and the
# language model's log-probability of the text (0 when the search weighs in none).
Reading = tuple[tuple[int, ...], float, float]


@dataclass(frozen=True)
class Fusion:
    """A language model weighed into the search (shallow fusion): each character a prefix grows
    by multiplies its probability by P_lm(character | the ones before)^weight * e^bonus. The
    bonus offsets the language model's cost per character, which would else favour dropping them."""

    lm: char_lm.CharLM
    symbols: np.ndarray  # the LM symbol of each token id (CharLM.symbol_of_tokens)
    weight: float
    bonus: float


def ctc_readings(
    log_probs: torch.Tensor, blank: int, skip: Iterable[int] = (), *, beam: int = 8,
    fusion: Fusion | None = None,
) -> list[list[Reading]]:
    """Per line of a (B, T, V) tensor of log-probabilities, up to `beam` readings, best first:
    (token ids, CTC log-probability, language-model log-probability).

    Tokens in `skip` (special tokens other than blank) are never emitted. With a `fusion` the
    readings are ranked by CTC + weight * LM + bonus * characters; without, by CTC alone, and
    their language-model log-probability is 0.
    """
    log_probs = log_probs.detach().cpu()
    plausible = log_probs >= PRUNE
    plausible[..., blank] = False
    for token in skip:
        plausible[..., token] = False
    n_lines, n_frames = log_probs.shape[:2]
    # Each (line, frame)'s plausible characters, packed: frame f of line l owns
    # tokens[starts[l * T + f] : starts[l * T + f + 1]] (nonzero walks lines, frames, tokens in order).
    lines, frames, tokens = plausible.nonzero(as_tuple=True)
    starts = np.zeros(n_lines * n_frames + 1, dtype=np.int64)
    np.cumsum(plausible.sum(-1).ravel().numpy(), out=starts[1:])
    if fusion is None:
        lm = (np.zeros(log_probs.shape[-1], dtype=np.int64), np.full(1, -1, dtype=np.int64),
              np.zeros(1, dtype=np.float32), np.full(1, -1, dtype=np.int64), np.zeros(1, dtype=np.float32),
              0.0, 1, 0.0, 0.0, False)
    else:
        model = fusion.lm
        lm = (fusion.symbols, *model.ngram_table, *model.context_table, model.uniform_logp,
              model.order, fusion.weight, fusion.bonus, True)
    found_tokens, lengths, scores, lm_scores, found = _search_lines(
        np.ascontiguousarray(log_probs[..., blank].double().numpy()), starts, tokens.numpy(),
        log_probs[lines, frames, tokens].double().numpy(), beam, *lm,
    )
    weight, bonus = (fusion.weight, fusion.bonus) if fusion else (0.0, 0.0)
    readings: list[list[Reading]] = []
    for line in range(n_lines):
        readings.append([])
        for k in range(found[line]):
            n = int(lengths[line, k])
            lm_lp = float(lm_scores[line, k])
            # The search ranks by the fused score; the CTC part is what is left without the LM's.
            ctc = float(scores[line, k]) - weight * lm_lp - bonus * n
            readings[-1].append((tuple(found_tokens[line, k, :n].tolist()), ctc, lm_lp))
    return readings


@compiled
def _search_lines(blank_lp, starts, tokens, char_lp, beam, symbols, ngram_slots, ngram_values, context_slots,
                  context_values, uniform_logp, order, weight, bonus, use_lm):
    """Every line's search; readings come back padded: (lines, beam, frames) token ids, their
    lengths, fused log-probabilities and language-model log-probabilities, and how many
    readings each line has."""
    n_lines, n_frames = blank_lp.shape
    found_tokens = np.zeros((n_lines, beam, max(n_frames, 1)), dtype=np.int64)
    lengths = np.zeros((n_lines, beam), dtype=np.int64)
    scores = np.full((n_lines, beam), -np.inf)
    lm_scores = np.zeros((n_lines, beam))
    found = np.zeros(n_lines, dtype=np.int64)
    for line in range(n_lines):
        first = line * n_frames
        found[line] = _search_line(
            blank_lp[line], starts[first : first + n_frames + 1], tokens, char_lp, beam,
            symbols, ngram_slots, ngram_values, context_slots, context_values, uniform_logp, order, weight,
            bonus, use_lm, found_tokens[line], lengths[line], scores[line], lm_scores[line],
        )
    return found_tokens, lengths, scores, lm_scores, found


@compiled
def _search_line(blank_lp, starts, tokens, char_lp, beam, symbols, ngram_slots, ngram_values, context_slots,
                 context_values, uniform_logp, order, weight, bonus, use_lm, out_tokens,
                 out_lengths, out_scores, out_lm):
    """One line's prefix beam search; writes its readings into the out_* rows, returns how many.

    Prefixes are nodes of a trie (parent node and last token per node). Each prefix in the beam
    keeps two probabilities, ending in blank (`pb`) and ending in its last character (`pnb`).
    Probabilities are added, not log-probabilities: after each frame they are divided by the best
    prefix's (its log kept in `scale`), so they cannot underflow over thousands of frames.
    With `use_lm`, each node also keeps its language-model context (the last order - 1 symbols,
    packed as char_lm.pack does, line start first) and its text's language-model log-probability.
    """
    n_frames = blank_lp.shape[0]
    parent = np.empty(1 + n_frames * beam, dtype=np.int64)  # each frame adds at most `beam` nodes
    token_of = np.empty(1 + n_frames * beam, dtype=np.int64)
    context = np.empty(1 + n_frames * beam, dtype=np.int64)
    context_len = np.empty(1 + n_frames * beam, dtype=np.int64)
    node_lm = np.empty(1 + n_frames * beam)
    keep = order - 1  # context symbols kept
    context[0] = 256 if keep > 0 else 1  # the line start, or no context for a unigram model
    context_len[0] = 1 if keep > 0 else 0
    node_lm[0] = 0.0
    # A node's children, as a list threaded through the nodes: one node per prefix, however often
    # the prefix leaves the beam and comes back, so equal prefixes are always merged.
    first_child = np.full(1 + n_frames * beam, -1, dtype=np.int64)
    next_sibling = np.full(1 + n_frames * beam, -1, dtype=np.int64)
    parent[0] = -1  # node 0: the empty prefix
    token_of[0] = -1
    n_nodes = 1
    node = np.zeros(beam, dtype=np.int64)
    pb = np.zeros(beam)
    pnb = np.zeros(beam)
    pb[0] = 1.0
    n_beams = 1
    widest = 0
    for t in range(n_frames):
        widest = max(widest, starts[t + 1] - starts[t])
    # Candidates of one frame: every prefix held over, then each grown by each character.
    cand_node = np.empty(beam * (1 + widest), dtype=np.int64)
    cand_parent = np.empty_like(cand_node)
    cand_token = np.empty_like(cand_node)
    cand_b = np.empty(beam * (1 + widest))
    cand_nb = np.empty_like(cand_b)
    cand_lm = np.empty_like(cand_b)  # a new prefix's last character's language-model log-prob
    scale = 0.0
    for t in range(n_frames):
        lo, hi = starts[t], starts[t + 1]
        p_blank = math.exp(blank_lp[t])
        if blank_lp[t] >= SURE_BLANK or hi == lo:
            # A blank can only close a prefix; its last character may be held over, no other added.
            for i in range(n_beams):
                held = pnb[i] * _char_prob(token_of[node[i]], tokens, char_lp, lo, hi)
                pb[i] = (pb[i] + pnb[i]) * p_blank
                pnb[i] = held
        else:
            n = 0
            for i in range(n_beams):
                cand_node[n] = node[i]
                cand_b[n] = (pb[i] + pnb[i]) * p_blank
                cand_nb[n] = pnb[i] * _char_prob(token_of[node[i]], tokens, char_lp, lo, hi)
                n += 1
            for i in range(n_beams):
                last = token_of[node[i]]
                total = pb[i] + pnb[i]
                for c in range(lo, hi):
                    token = tokens[c]
                    lm = 0.0
                    if use_lm:
                        lm = char_lm.lookup(context[node[i]], context_len[node[i]], symbols[token],
                                            ngram_slots, ngram_values, context_slots, context_values,
                                            uniform_logp)
                    # A repeated character needs a blank between the two, so only `pb` can extend.
                    grown = (pb[i] if token == last else total) * math.exp(
                        char_lp[c] + weight * lm + bonus)
                    # The longer prefix may be in the beam already ("ab" beside "a" + "b").
                    longer = _child(node[i], token, first_child, next_sibling, token_of)
                    held = -1
                    if longer >= 0:
                        for s in range(n_beams):
                            if node[s] == longer:
                                held = s
                                break
                    if held >= 0:
                        cand_nb[held] += grown
                    else:
                        cand_node[n] = longer  # -1: a prefix not in the trie yet
                        cand_parent[n] = node[i]
                        cand_token[n] = token
                        cand_b[n] = 0.0
                        cand_nb[n] = grown
                        cand_lm[n] = lm
                        n += 1
            order = np.argsort(-(cand_b[:n] + cand_nb[:n]), kind="mergesort")
            n_beams = min(beam, n)
            for k in range(n_beams):
                c = order[k]
                if cand_node[c] < 0:
                    up = cand_parent[c]
                    parent[n_nodes] = up
                    token_of[n_nodes] = cand_token[c]
                    node_lm[n_nodes] = node_lm[up] + cand_lm[c]
                    symbol = symbols[cand_token[c]]
                    if keep == 0:
                        context[n_nodes] = 1
                        context_len[n_nodes] = 0
                    elif context_len[up] < keep:
                        context[n_nodes] = context[up] * 256 + symbol
                        context_len[n_nodes] = context_len[up] + 1
                    else:  # the oldest symbol drops out
                        kept = 1 << (8 * (keep - 1))  # the newer keep - 1 symbols stay
                        context[n_nodes] = ((kept + (context[up] & (kept - 1))) << 8) + symbol
                        context_len[n_nodes] = keep
                    next_sibling[n_nodes] = first_child[up]
                    first_child[up] = n_nodes
                    cand_node[c] = n_nodes
                    n_nodes += 1
                node[k] = cand_node[c]
                pb[k] = cand_b[c]
                pnb[k] = cand_nb[c]
        best = 0.0
        for i in range(n_beams):
            best = max(best, pb[i] + pnb[i])
        if best > 0.0:  # 0: every prefix has become impossible, and stays so
            scale += math.log(best)
            for i in range(n_beams):
                pb[i] /= best
                pnb[i] /= best
    order = np.argsort(-(pb[:n_beams] + pnb[:n_beams]), kind="mergesort")
    for k in range(n_beams):
        i = order[k]
        total = pb[i] + pnb[i]
        out_scores[k] = math.log(total) + scale if total > 0.0 else -np.inf
        out_lm[k] = node_lm[node[i]]
        length = 0
        walk = node[i]
        while walk > 0:
            length += 1
            walk = parent[walk]
        out_lengths[k] = length
        walk = node[i]
        for position in range(length - 1, -1, -1):
            out_tokens[k, position] = token_of[walk]
            walk = parent[walk]
    return n_beams


@compiled
def _char_prob(token, tokens, char_lp, lo, hi):
    """The probability of `token` in the frame whose characters are tokens[lo:hi]; 0 if pruned."""
    for c in range(lo, hi):
        if tokens[c] == token:
            return math.exp(char_lp[c])
    return 0.0


@compiled
def _child(node, token, first_child, next_sibling, token_of):
    """The trie node of `node`'s prefix grown by `token`; -1 if there is none yet."""
    child = first_child[node]
    while child >= 0 and token_of[child] != token:
        child = next_sibling[child]
    return child
