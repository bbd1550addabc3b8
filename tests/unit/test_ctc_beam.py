"""CTC prefix beam search: its scores are the CTC probabilities summed over every alignment."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import torch

from pipeline.ctc_beam import PRUNE, SURE_BLANK, ctc_readings

BLANK = 0


def _search(log_probs, **kwargs):
    """Beam search over one line's (T, V) log-probabilities."""
    return [(ids, ctc) for ids, ctc, _ in ctc_readings(torch.as_tensor(log_probs).unsqueeze(0), BLANK, **kwargs)[0]]


def _ctc_log_prob(log_probs: torch.Tensor, label: tuple[int, ...]) -> float:
    """Exact log P(label) by torch's CTC loss (the forward algorithm)."""
    if not label:
        return float(log_probs[:, BLANK].sum())
    nll = torch.nn.functional.ctc_loss(
        log_probs.unsqueeze(1), torch.tensor([label]), torch.tensor([log_probs.shape[0]]),
        torch.tensor([len(label)]), blank=BLANK, reduction="sum",
    )
    return -float(nll)


def test_beam_scores_are_exact_and_the_best_label_comes_first():
    torch.manual_seed(0)
    frames, vocab = 5, 3  # blank and two characters: every label is enumerable
    log_probs = torch.randn(frames, vocab).mul(1.5).log_softmax(-1).double()
    assert log_probs.min() > PRUNE  # nothing pruned: every alignment is in the sum
    exact = {
        label: _ctc_log_prob(log_probs, label)
        for n in range(frames + 1)
        for label in itertools.product((1, 2), repeat=n)
    }
    exact = {k: v for k, v in exact.items() if v > -math.inf}
    found = _search(log_probs, beam=64)
    assert found[0][0] == max(exact, key=exact.get)
    for label, score in found[:10]:
        assert math.isclose(score, exact[label], rel_tol=1e-6, abs_tol=1e-6)


def test_a_repeated_character_needs_a_blank_between():
    p = math.log(0.98)
    low = math.log(0.01)
    # Frames read: a, a, blank, a  ->  "aa" (the first two frames merge, the blank splits).
    frames = [[low, p, low], [low, p, low], [p, low, low], [low, p, low]]
    best, _ = _search(frames, beam=4)[0]
    assert best == (1, 1)


def test_skipped_tokens_are_never_emitted():
    frames = [[math.log(0.1), math.log(0.1), math.log(0.8)]] * 3
    readings = _search(frames, beam=4, skip={2})
    assert all(2 not in label for label, _ in readings)


def test_long_blank_gaps_leave_the_reading_and_its_score_exact():
    torch.manual_seed(1)
    frames, vocab = 120, 6
    logits = torch.randn(frames, vocab)
    logits[:, BLANK] += 15.0  # gaps: blank nearly certain, as between a CTC head's characters
    for t, token in ((20, 3), (21, 3), (60, 5), (61, 0), (90, 3)):
        logits[t, token] += 25.0
    log_probs = logits.log_softmax(-1).double()
    (label, score), *_ = _search(log_probs, beam=8)
    assert label == (3, 5, 3)
    assert math.isclose(score, _ctc_log_prob(log_probs, label), abs_tol=1e-3)


def test_lines_of_a_batch_are_searched_apart():
    torch.manual_seed(2)
    log_probs = torch.randn(3, 40, 5).mul(2).log_softmax(-1).double()
    together = [[(ids, ctc) for ids, ctc, _ in line] for line in ctc_readings(log_probs, BLANK, beam=8)]
    assert together == [_search(line, beam=8) for line in log_probs]
    assert len({readings[0][0] for readings in together}) == 3  # three different lines read


def _sparse(log_probs):
    """Per frame: blank's log-probability and each character's above PRUNE (what the search reads)."""
    return [(float(row[BLANK]), {t: float(lp) for t, lp in enumerate(row) if t != BLANK and lp >= PRUNE})
            for row in log_probs]


def _log_space_search(frames, beam):
    """The same prefix beam search done in pure Python in log space (slow, but it cannot
    underflow): a reference. Like the search, it grows no prefix in a frame whose blank is sure."""
    def add(a, b):
        if a == -math.inf:
            return b
        high, low = max(a, b), min(a, b)
        return high + math.log1p(math.exp(low - high))

    beams = {(): (0.0, -math.inf)}
    for p_blank, chars in frames:
        grown = {}
        for prefix, (b, nb) in beams.items():
            total, last = add(b, nb), (prefix[-1] if prefix else None)
            nb_same = nb + chars[last] if last in chars else -math.inf
            old_b, old_nb = grown.get(prefix, (-math.inf, -math.inf))
            grown[prefix] = (add(old_b, total + p_blank), add(old_nb, nb_same))
            for token, lp in (chars.items() if p_blank < SURE_BLANK else ()):
                longer = prefix + (token,)
                old_b, old_nb = grown.get(longer, (-math.inf, -math.inf))
                grown[longer] = (old_b, add(old_nb, (b if token == last else total) + lp))
        beams = dict(sorted(grown.items(), key=lambda kv: add(*kv[1]), reverse=True)[:beam])
    return sorted(((k, add(*v)) for k, v in beams.items()), key=lambda kv: kv[1], reverse=True)


def test_a_long_line_scores_as_in_log_space_far_below_what_a_float_can_hold():
    # 6,000 frames of uncertain characters: the readings' probabilities are far under a double's
    # smallest value (about e^-745), which the search must carry by rescaling, not lose to underflow.
    torch.manual_seed(1)
    log_probs = (torch.rand(6000, 3, dtype=torch.double) + 0.05).log().log_softmax(-1)
    found = _search(log_probs, beam=8)
    reference = _log_space_search(_sparse(log_probs), beam=8)
    assert found[0][1] < -745
    assert [label for label, _ in found] == [label for label, _ in reference]
    for (_, score), (_, expected) in zip(found, reference):
        assert math.isclose(score, expected, rel_tol=1e-9)


def test_prefixes_that_leave_the_beam_and_come_back_are_still_merged():
    # A narrow beam over uncertain frames: prefixes drop out and are grown again later, where a
    # search that forgot them would hold the same text twice with its probability split.
    torch.manual_seed(3)
    for _ in range(40):
        frames, vocab = int(torch.randint(20, 90, ())), int(torch.randint(3, 7, ()))
        logits = torch.randn(frames, vocab) * 2.5
        logits[:, BLANK] += float(torch.rand(())) * 4
        log_probs = logits.log_softmax(-1).double()
        found = _search(log_probs, beam=4)
        reference = _log_space_search(_sparse(log_probs), beam=4)
        assert len({label for label, _ in found}) == len(found)
        assert [label for label, _ in found] == [label for label, _ in reference]
        for (_, score), (_, expected) in zip(found, reference):
            assert math.isclose(score, expected, rel_tol=1e-9)


def test_the_search_runs_where_numba_has_nowhere_to_keep_its_machine_code():
    # As in a read-only install run by a user without a home: numba finds no cache folder (here
    # told to look only inside zip files), so the search compiles in the process instead of failing.
    code = ("import torch; from pipeline.ctc_beam import ctc_readings, _search_lines; "
            "print(type(_search_lines._cache).__name__); "
            "print(ctc_readings(torch.tensor([[[-0.01, -5.0, -9.0], [-5.0, -0.01, -9.0]]]), 0, beam=2))")
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "ZipCacheLocator"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    cache, readings = out.stdout.splitlines()
    assert cache == "NullCache"  # nothing cached: the fallback was taken
    expected = _search(torch.tensor([[-0.01, -5.0, -9.0], [-5.0, -0.01, -9.0]]), beam=2)
    assert readings == str([[(ids, ctc, 0.0) for ids, ctc in expected]])


def _fusion(lines, weight, bonus, order=3):
    """A language model over the characters 'a', 'b' (token ids 1 and 2 beside blank 0)."""
    import numpy as np

    from pipeline import char_lm
    from pipeline.ctc_beam import Fusion

    lm = char_lm.build(lines, order=order, alphabet="ab", min_count=1)
    return Fusion(lm, np.array([lm.unknown, 1, 2]), weight, bonus)


def test_fused_readings_carry_their_exact_ctc_and_language_model_scores():
    torch.manual_seed(4)
    frames = 5
    log_probs = torch.randn(frames, 3).mul(1.5).log_softmax(-1).double()
    fusion = _fusion(["abab", "abba", "ab"], weight=0.7, bonus=0.4)
    found = ctc_readings(log_probs.unsqueeze(0), BLANK, beam=64, fusion=fusion)[0]
    text = {1: "a", 2: "b"}
    fused = {}
    for label, ctc, lm_lp in found:
        assert math.isclose(ctc, _ctc_log_prob(log_probs, label), rel_tol=1e-6, abs_tol=1e-6)
        assert math.isclose(lm_lp, fusion.lm.text_logp("".join(text[t] for t in label)), rel_tol=1e-5, abs_tol=1e-5)
        fused[label] = ctc + fusion.weight * lm_lp + fusion.bonus * len(label)
    # Ranked by the fused score, and the best of every possible label comes first.
    assert [label for label, *_ in found] == sorted(fused, key=fused.get, reverse=True)
    best = max(
        (label for n in range(frames + 1) for label in itertools.product((1, 2), repeat=n)
         if _ctc_log_prob(log_probs, label) > -math.inf),
        key=lambda label: _ctc_log_prob(log_probs, label) + fusion.weight * fusion.lm.text_logp(
            "".join(text[t] for t in label)) + fusion.bonus * len(label),
    )
    assert found[0][0] == best


def test_the_language_model_turns_a_close_call_its_way():
    # The last character is a little more likely 'b' to the eye; the text always ends "aa".
    sure, likely, unlikely = math.log(0.97), math.log(0.55), math.log(0.44)
    low = math.log(0.015)
    frames = [[low, sure, low], [sure, low, low], [low, sure, low], [sure, low, low],
              [low, unlikely, likely]]
    plain = ctc_readings(torch.tensor([frames], dtype=torch.double), BLANK, beam=8)[0]
    assert plain[0][0] == (1, 1, 2)
    fusion = _fusion(["aaa", "aaa", "aaa", "aab"], weight=1.0, bonus=0.0)
    fused = ctc_readings(torch.tensor([frames], dtype=torch.double), BLANK, beam=8, fusion=fusion)[0]
    assert fused[0][0] == (1, 1, 1)
    # Its CTC score is still the eye's: lower than the plain best.
    assert fused[0][1] < plain[0][1]
