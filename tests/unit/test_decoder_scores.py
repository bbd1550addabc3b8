"""The decoder's scores of rival readings: prefix trees score exactly what separate rows would."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.decoder_scores import (
    PAD_BUDGET,
    decoder_log_likelihoods,
    length_chunks,
    reading_trees,
)


def test_rivals_share_their_common_prefix():
    # Readings "abc", "abd" and "ab" of one line, "x" of another; start 1, EOS 2.
    a, b, c, d, x = 10, 11, 12, 13, 14
    trees = reading_trees([0, 0, 0, 1], [[a, b, c], [a, b, d], [a, b], [x]], start=1, eos=2, max_nodes=64)
    line, other = trees
    assert (line.owner, other.owner) == (0, 1)
    assert line.tokens == [1, a, b, c, d]  # start, a, b shared; c and d are the branches
    assert line.depths == [0, 1, 2, 3, 3]
    # Each node sees itself and its ancestors only: d never sees its sibling c.
    expected = np.array([[1, 0, 0, 0, 0],
                         [1, 1, 0, 0, 0],
                         [1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 0],
                         [1, 1, 1, 0, 1]], dtype=bool)
    assert (line.visible() == expected).all()
    # "ab" is scored at the start, a and b nodes: a, b, then EOS after b.
    assert [(node, target) for i, node, target in line.steps if i == 2] == [(0, a), (1, b), (2, 2)]
    assert other.tokens == [1, x]
    # Without a settable position table every reading gets its own row.
    assert [t.tokens for t in reading_trees([0, 0], [[a, b], [a, c]], 1, 2, None)] == [[1, a, b], [1, a, c]]


def test_a_line_whose_readings_outgrow_the_position_table_gets_more_rows():
    texts = [[10 + i, 20, 21, 22] for i in range(5)]  # five readings, no shared first token
    trees = reading_trees([0] * 5, texts, start=1, eos=2, max_nodes=10)
    assert [len(t) for t in trees] == [9, 9, 5]  # start + 4 per reading, at most 10 nodes a row
    assert sorted(i for t in trees for i, _, _ in t.steps) == sorted(i for i in range(5) for _ in range(5))


def _scored_alone(model, pixels, text, eos):
    """A reading's log-likelihood from the model's own forward pass, one row for it alone."""
    import torch

    labels = torch.tensor([[*text, eos]])
    with torch.inference_mode():
        logits = model(pixel_values=pixels, labels=labels).logits.log_softmax(-1)
    return float(logits[0].gather(-1, labels[0, :, None]).sum())


@pytest.mark.parametrize("max_positions", [None, 9])
def test_tree_scores_equal_each_reading_scored_on_its_own(max_positions):
    """Rivals sharing prefixes, one a prefix of another, on two lines of different widths: the
    prefix-tree pass must give each reading the score a pass over it alone gives. With a small
    position table a line's readings are split over several rows, with the same scores, and a
    reading too long for the table scores -inf (the decoder cannot weigh it) instead of failing."""
    import torch

    from pipeline.training.model import LineModelConfig, build_line_model

    torch.manual_seed(3)
    model, processor = build_line_model(LineModelConfig.tiny())
    model.eval()
    if max_positions:
        model.decoder.config.max_position_embeddings = max_positions
    tok = processor.tokenizer
    eos = model.generation_config.eos_token_id
    wide, narrow = torch.rand(1, 1, 16, 128), torch.rand(1, 1, 16, 64)
    with torch.inference_mode():
        states = [model.encoder(pixel_values=p).last_hidden_state[0] for p in (wide, narrow)]
    words = {0: ["TOTAL RM", "TOTAL RN", "TOTAL", "TOTAL RM 5", "T0TAL"], 1: ["abc", "abd", "xyz"]}
    owners = [line for line, ws in words.items() for _ in ws]
    texts = [tok(w, add_special_tokens=False).input_ids for ws in words.values() for w in ws]
    got = decoder_log_likelihoods(model, states, owners, texts, batch_size=2)
    want = [_scored_alone(model, (wide, narrow)[o], t, eos) for o, t in zip(owners, texts)]
    assert len({round(s, 3) for s in want}) == len(want)  # the rivals do differ
    if max_positions:
        too_long = [len(t) >= max_positions for t in texts]
        assert too_long.count(True) == 1  # "TOTAL RM 5"
        want = [-math.inf if long else w for w, long in zip(want, too_long)]
    assert got == pytest.approx(want, abs=1e-4)


def test_decoder_passes_group_readings_of_like_length():
    lengths = [5, 57, 6, 21, 5, 44, 20, 6, 58, 22] * 4
    chunks = length_chunks(lengths, batch_size=8)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    for chunk in chunks:
        assert len(chunk) <= 8
        sizes = [lengths[i] for i in chunk]
        assert sizes == sorted(sizes)
        assert max(sizes) * len(sizes) - sum(sizes) <= PAD_BUDGET
    # The shortest readings are never padded out to the longest.
    assert not any(min(lengths[i] for i in c) < 10 and max(lengths[i] for i in c) > 40 for c in chunks)
