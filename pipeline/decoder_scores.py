"""The decoder's log-likelihood of given texts (teacher-forced), for picking among a CTC head's readings.

Each line brings several rival readings ("RM" against "RN") that differ in a character or two, so
most of their tokens are shared prefixes. A line's readings go into one decoder row as a prefix
tree: each node is one token at its depth's position and attends only to its ancestors, so a
shared prefix is computed once and the line's encoder states are attended from one row, not one
per reading. On the dev handwriting this is 1,100 positions where separate rows needed 2,600.

A pass costs about 5 ms on 2 CPU cores before it computes anything, and computes every row out to
its longest: so the rows of all the lines read together go in few passes, in chunks of like length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Padding positions a pass may compute before a shorter chunk of rows pays for its own pass's
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


@dataclass
class ReadingTree:
    """One decoder row: a prefix tree over some readings of one line.

    Node 0 is the start token; every other node is a reading's token after the prefix its parent
    (the node before it on the reading's path) spells. The decoder's output at a node predicts
    the token after it, so a reading of n tokens is scored at n + 1 nodes: its prefixes, the last
    one predicting EOS.
    """

    owner: int  # the line whose encoder states the row attends to
    tokens: list[int]
    depths: list[int] = field(default_factory=lambda: [0])
    # Per reading: its index, its nodes (start first) and the token each node should predict.
    readings: list[tuple[int, list[int], list[int]]] = field(default_factory=list)
    children: dict[tuple[int, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def steps(self) -> list[tuple[int, int, int]]:
        """(reading's index, node, the token that node should predict) for every reading."""
        return [(index, node, target) for index, path, targets in self.readings
                for node, target in zip(path, targets)]

    def new_nodes(self, text: Sequence[int]) -> int:
        """How many nodes adding `text` would add."""
        node = 0
        for depth, token in enumerate(text):
            node = self.children.get((node, token), -1)
            if node < 0:
                return len(text) - depth
        return 0

    def add(self, index: int, text: Sequence[int], eos: int) -> None:
        path = [0]
        for token in text:
            child = self.children.get((path[-1], token))
            if child is None:
                child = self.children[(path[-1], token)] = len(self.tokens)
                self.tokens.append(token)
                self.depths.append(self.depths[path[-1]] + 1)
            path.append(child)
        self.readings.append((index, path, [*text, eos]))

    def visible(self) -> np.ndarray:
        """(nodes, nodes) booleans: which nodes each node attends to (its ancestors and itself)."""
        seen = np.zeros((len(self.tokens),) * 2, dtype=bool)
        longest = max(len(path) for _, path, _ in self.readings)
        below = np.tri(longest, dtype=bool)
        # Along a reading's path each node's ancestors are the nodes before it.
        for _, path, _ in self.readings:
            seen[np.ix_(path, path)] |= below[: len(path), : len(path)]
        return seen


def reading_trees(
    owners: Sequence[int], texts: Sequence[Sequence[int]], start: int, eos: int, max_nodes: int | None,
) -> list[ReadingTree]:
    """Rows for the decoder: each line's readings in prefix trees of at most `max_nodes` nodes
    (the decoder's position table), or, with `max_nodes` None, one row per reading. A reading
    longer than the table is left out: the decoder cannot weigh it."""
    trees: list[ReadingTree] = []
    current: dict[int, ReadingTree] = {}  # each line's row still being filled
    for index, (owner, text) in enumerate(zip(owners, texts)):
        if max_nodes is not None and len(text) >= max_nodes:
            continue
        tree = current.get(owner)
        if tree is None or max_nodes is None or len(tree) + tree.new_nodes(text) > max_nodes:
            tree = current[owner] = ReadingTree(owner, [start])
            trees.append(tree)
        tree.add(index, text, eos)
    return trees


def decoder_log_likelihoods(
    model: Any, states: Sequence[Any], owners: Sequence[int], texts: Sequence[Sequence[int]],
    batch_size: int,
) -> list[float]:
    """The decoder's log-probability of each text (EOS included), read off `states[owners[i]]`,
    the encoder's last hidden state (frames, width) of one line; -inf for a text longer than the
    decoder's positions.

    Lines of different widths share a pass: each row attends only to its own line's frames. The
    decoder must take a 4D mask added to its attention scores, as TrOCR's (every Quire model's) does.
    """
    import torch

    config = model.config
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    # A node's position is its depth, which the decoder cannot be told: it adds position i to the
    # i-th input. So the inputs go in as embeddings with that swapped for the depth's (learned
    # tables only). Other decoders get a row per reading, where position and depth agree.
    table = getattr(model.decoder.get_decoder(), "embed_positions", None)
    if not (getattr(model.decoder.config, "use_learned_position_embeddings", False)
            and hasattr(table, "offset")):
        table = None
    max_nodes = int(model.decoder.config.max_position_embeddings) if table is not None else None
    trees = reading_trees(owners, texts, config.decoder_start_token_id, eos, max_nodes)
    # As VisionEncoderDecoderModel.forward does: an encoder narrower than the decoder is projected.
    project = (model.encoder.config.hidden_size != model.decoder.config.hidden_size
               and getattr(model.decoder.config, "cross_attention_hidden_size", None) is None)
    scores = [-math.inf] * len(texts)
    for chunk in length_chunks([len(t) for t in trees], batch_size):
        rows = [trees[i] for i in chunk]
        device = states[rows[0].owner].device
        ids, depths, seen = (t.to(device) for t in _row_inputs(rows, config.pad_token_id))
        encoded, frames_mask = _line_states([states[tree.owner] for tree in rows])
        with torch.inference_mode():
            if project:
                encoded = model.enc_to_dec_proj(encoded)
            embedded = model.decoder.get_input_embeddings()(ids)
            if table is not None:
                where = torch.arange(ids.shape[1], device=device)
                shift = table.weight[depths + table.offset] - table.weight[where + table.offset]
                embedded = embedded + shift.to(embedded.dtype)
            blocked = torch.zeros(seen.shape, dtype=embedded.dtype, device=device)
            blocked.masked_fill_(~seen, torch.finfo(embedded.dtype).min)
            out = model.decoder(
                inputs_embeds=embedded,
                attention_mask=blocked[:, None],  # (rows, 1, nodes, nodes), added to the scores
                encoder_hidden_states=encoded,
                encoder_attention_mask=frames_mask,
                use_cache=False,
            )
            log_probs = out.logits.float().log_softmax(-1)
        steps = torch.tensor([(r, node, target, index) for r, tree in enumerate(rows)
                              for index, node, target in tree.steps])
        at = steps[:, :3].to(device)
        picked = log_probs[at[:, 0], at[:, 1], at[:, 2]].cpu().double()
        totals = torch.zeros(len(texts), dtype=torch.float64).index_add_(0, steps[:, 3], picked)
        for index in set(steps[:, 3].tolist()):
            scores[index] = float(totals[index])
    return scores


def _row_inputs(rows: Sequence[ReadingTree], pad: int):
    """Token ids, depths and who-sees-whom (rows, nodes, nodes) for trees padded to the longest.
    Padding nodes see only themselves (a row must see something); real nodes never see them."""
    import torch

    width = max(len(tree) for tree in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    depths = torch.zeros((len(rows), width), dtype=torch.long)
    seen = torch.eye(width, dtype=torch.bool).repeat(len(rows), 1, 1)
    for r, tree in enumerate(rows):
        n = len(tree)
        ids[r, :n] = torch.tensor(tree.tokens)
        depths[r, :n] = torch.tensor(tree.depths)
        seen[r, :n, :n] = torch.from_numpy(tree.visible())
    return ids, depths, seen


def _line_states(lines: Sequence[Any]):
    """Lines' encoder states padded to the widest, and a mask of their real frames (None when
    all are as wide)."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    encoded = pad_sequence(list(lines), batch_first=True)
    frames = torch.tensor([len(line) for line in lines], device=encoded.device)
    if frames.min() == encoded.shape[1]:
        return encoded, None
    return encoded, (torch.arange(encoded.shape[1], device=encoded.device) < frames[:, None]).long()
