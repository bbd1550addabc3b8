"""A character n-gram language model: how likely a character is after the few before it.

A line model reads each character from the pixels alone; where the writing is unclear (hands,
faded print) it cannot tell "mentat" from "mental". Weighing the CTC head's readings by how
text usually goes picks the likelier one, as n-gram models do in handwriting recognisers
(PyLaia, Kaldi-based HTR). The model is Witten-Bell interpolated: each context's own counts
are trusted in proportion to how often it was seen, the rest of the probability comes from the
shorter context.

The file keeps n-grams and contexts as sorted integer keys; loaded, they go into open-addressing
hash tables that the compiled CTC search (pipeline.ctc_beam) probes once per order: a binary
search over the megabytes of keys cost the search 4-5x its time on hand lines. An n-gram's key
writes its symbols as base-256 digits behind a leading 1, so different lengths never collide.
Symbol 0 is the start of a line, the last symbol stands for every character the model never saw.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.compiled import compiled

FILE_NAME = "char_lm.npz"  # where recognition looks for a model's language model
DEFAULT_ORDER = 6  # five characters of context: 6 and 8 read the dev hands alike, 8 is 4x bigger
MAX_ORDER = 7  # 7 base-256 digits and the leading 1 fit an int64
MAX_SYMBOLS = 255  # base-256 digits: the line start, 253 characters, the unknown character
# N-grams of the longer orders seen fewer times than this are left out (their context's backoff
# covers them): they are most of the table and the reading hardly changes without them.
MIN_COUNT = 2
PRUNE_FROM_ORDER = 4


@dataclass(frozen=True)
class CharLM:
    """The tables the search reads; see the module docstring for the key layout."""

    alphabet: str  # symbol i + 1 is alphabet[i]
    order: int
    ngram_keys: np.ndarray  # int64, sorted
    ngram_logp: np.ndarray  # float32: log P(last symbol | the ones before it)
    context_keys: np.ndarray  # int64, sorted
    context_backoff: np.ndarray  # float32: log of the weight left to the shorter context
    # The same, as hash tables: (slot keys, -1 where empty; slot values). Built on creation.
    ngram_table: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    context_table: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ngram_table", hash_table(self.ngram_keys, self.ngram_logp))
        object.__setattr__(self, "context_table", hash_table(self.context_keys, self.context_backoff))

    @property
    def unknown(self) -> int:
        return len(self.alphabet) + 1

    @property
    def uniform_logp(self) -> float:
        """Below the unigrams: every symbol but the line start equally likely."""
        return -math.log(len(self.alphabet) + 1)

    def symbols(self, text: str) -> list[int]:
        index = _symbol_index(self.alphabet)
        return [index.get(c, self.unknown) for c in text]

    def symbol_of_tokens(self, tokens: dict[str, int], size: int) -> np.ndarray:
        """For a tokenizer's vocabulary ({text: id}, ids below `size`), each id's symbol: the
        unknown symbol for tokens that are not one known character (specials, merged pieces)."""
        index = _symbol_index(self.alphabet)
        table = np.full(size, self.unknown, dtype=np.int64)
        for text, token in tokens.items():
            if len(text) == 1 and text in index and 0 <= token < size:
                table[token] = index[text]
        return table

    def logp(self, context: Sequence[int], symbol: int) -> float:
        """log P(symbol | context), context as symbols (0 = line start), oldest first."""
        return float(lookup(pack(context[-(self.order - 1):] if self.order > 1 else ()),
                            min(len(context), self.order - 1), symbol, *self.ngram_table,
                            *self.context_table, self.uniform_logp))

    def text_logp(self, text: str) -> float:
        """log P(text) as a line, from its start; no end-of-line term."""
        context = [0]
        total = 0.0
        for symbol in self.symbols(text):
            total += self.logp(context, symbol)
            context.append(symbol)
        return total

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path, alphabet=np.array(self.alphabet), order=np.int64(self.order),
            ngram_keys=self.ngram_keys, ngram_logp=self.ngram_logp,
            context_keys=self.context_keys, context_backoff=self.context_backoff,
        )


def load(path: str | Path) -> CharLM:
    try:
        with np.load(path, allow_pickle=False) as f:
            return CharLM(str(f["alphabet"]), int(f["order"]), f["ngram_keys"], f["ngram_logp"],
                          f["context_keys"], f["context_backoff"])
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a Quire character language model ({exc})") from None


def _symbol_index(alphabet: str) -> dict[str, int]:
    """Each character's symbol: its place in the alphabet, from 1 (0 is the line start)."""
    return {c: i + 1 for i, c in enumerate(alphabet)}


def pack(symbols: Sequence[int]) -> int:
    key = 1
    for s in symbols:
        key = key * 256 + int(s)
    return key


# Multiplier of the hash (odd, 63 bits); a slot is read from bits 40 and up of the product, which
# depend on every bit of a key (keys are under 2^57).
_HASH = 0x7F4A7C159E3779B1


def hash_table(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Open addressing with linear probing, at most 2/3 full."""
    size = 1 << max(4, math.ceil(math.log2(max(1, len(keys)) * 1.5)))
    slots = np.full(size, -1, dtype=np.int64)
    slot_values = np.zeros(size, dtype=np.float32)
    _fill(np.asarray(keys, dtype=np.int64), np.asarray(values, dtype=np.float32), slots, slot_values)
    return slots, slot_values


@compiled
def _slot(slots, key):
    """Where `key` is in the table, or the empty slot where it would go."""
    mask = slots.shape[0] - 1
    i = ((key * _HASH) >> 40) & mask
    while slots[i] != -1 and slots[i] != key:
        i = (i + 1) & mask
    return i


@compiled
def _fill(keys, values, slots, slot_values):
    for k in range(keys.shape[0]):
        i = _slot(slots, keys[k])
        slots[i] = keys[k]
        slot_values[i] = values[k]


@compiled
def lookup(context_key, context_len, symbol, ngram_slots, ngram_values, context_slots,
           context_values, uniform_logp):
    """log P(symbol | context): the longest stored n-gram ending in it, plus the backoff weights
    of the longer contexts that were seen but never followed by it."""
    backoff = 0.0
    for used in range(context_len, -1, -1):
        # The context's last `used` symbols, keeping the leading 1.
        top = 1 << (8 * used)
        context = top + (context_key & (top - 1))
        i = _slot(ngram_slots, context * 256 + symbol)
        if ngram_slots[i] != -1:
            return backoff + ngram_values[i]
        j = _slot(context_slots, context)
        if context_slots[j] != -1:
            backoff += context_values[j]
    return backoff + uniform_logp


def build(lines: Iterable[str], order: int = DEFAULT_ORDER, *, alphabet: str | None = None,
          min_count: int = MIN_COUNT, progress: Callable[[int], object] | None = None) -> CharLM:
    """Count every line's n-grams (each line starts after the line-start symbol) and turn the
    counts into Witten-Bell probabilities. `alphabet` fixes the characters it knows (e.g. a
    recognition model's); by default the most frequent characters of the text. `progress` is
    called with 1 after each line is counted (a progress bar's update)."""
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be 1-{MAX_ORDER}, not {order}")
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError("no text to build a language model from")
    if alphabet is None:
        frequency = Counter(c for line in lines for c in line)
        alphabet = "".join(c for c, _ in frequency.most_common(MAX_SYMBOLS - 2))
    if len(alphabet) > MAX_SYMBOLS - 2:
        raise ValueError(f"at most {MAX_SYMBOLS - 2} characters, not {len(alphabet)}")
    index = _symbol_index(alphabet)
    counts = _count(([index.get(c, len(alphabet) + 1) for c in line] for line in lines), order, progress)
    logp, backoff = _witten_bell(counts, -math.log(len(alphabet) + 1), min_count)
    ngrams = sorted((pack((*context, symbol)), p) for table in logp for (context, symbol), p in table.items())
    contexts = sorted((pack(context), w) for table in backoff for context, w in table.items())
    return CharLM(
        alphabet, order,
        np.array([key for key, _ in ngrams], dtype=np.int64), np.array([p for _, p in ngrams], dtype=np.float32),
        np.array([key for key, _ in contexts], dtype=np.int64), np.array([w for _, w in contexts], dtype=np.float32),
    )


def _count(lines: Iterable[list[int]], order: int, progress) -> list[Counter]:
    """counts[k][(context, symbol)]: how often `symbol` followed each context of k symbols."""
    counts: list[Counter] = [Counter() for _ in range(order)]
    for line in lines:
        symbols = [0] * (order - 1) + line
        for i in range(order - 1, len(symbols)):
            for k in range(order):
                # A context may not reach back over more than one line start.
                if k >= 2 and symbols[i - k + 1] == 0:
                    break
                counts[k][(tuple(symbols[i - k:i]), symbols[i])] += 1
        if progress is not None:
            progress(1)
    return counts


def _witten_bell(counts: list[Counter], uniform: float, min_count: int) -> tuple[list[dict], list[dict]]:
    """Per order, the kept n-grams' log-probabilities and the contexts' backoff weights (logs)."""
    order = len(counts)
    totals: list[Counter] = [Counter() for _ in range(order)]  # context -> n (all followers)
    kinds: list[Counter] = [Counter() for _ in range(order)]  # context -> distinct followers
    for k in range(order):
        for (context, _), n in counts[k].items():
            totals[k][context] += n
            kinds[k][context] += 1
    # Shortest context first: each order interpolates with the finished order below it.
    logp: list[dict] = [{} for _ in range(order)]  # (context, symbol) -> log P, the n-grams kept
    backoff: list[dict] = [{} for _ in range(order)]  # context -> log weight left to the shorter
    for k in range(order):
        probability, lower = {}, {}
        for (context, symbol), n in counts[k].items():
            lower[context, symbol] = math.exp(_logp(logp, backoff, context[1:], symbol, uniform) if k else uniform)
            seen = totals[k][context]
            weight = seen / (seen + kinds[k][context])
            probability[context, symbol] = weight * n / seen + (1 - weight) * lower[context, symbol]
        prune = k + 1 >= PRUNE_FROM_ORDER and min_count > 1
        kept = {g for g in probability if not prune or counts[k][g] >= min_count}
        # A context's backoff weight gives the shorter context's share to the characters whose
        # n-gram is not kept, so the context's probabilities still add up to 1 (ARPA pruning).
        mass: defaultdict[tuple[int, ...], float] = defaultdict(float)
        lower_mass: defaultdict[tuple[int, ...], float] = defaultdict(float)
        kept_kinds: Counter[tuple[int, ...]] = Counter()
        for context, symbol in kept:
            mass[context] += probability[context, symbol]
            lower_mass[context] += lower[context, symbol]
            kept_kinds[context] += 1
        for context, seen in totals[k].items():
            left, lower_left = 1.0 - mass[context], 1.0 - lower_mass[context]
            if kept_kinds[context] == kinds[k][context]:  # nothing pruned: Witten-Bell's own weight
                weight = math.log1p(-seen / (seen + kinds[k][context]))
            elif lower_left > 1e-9 and left > 1e-12:
                weight = math.log(left / lower_left)
            else:  # no mass left on one side (rounding): the shorter context as it is
                weight = 0.0
            if weight != 0.0:
                backoff[k][context] = weight
        logp[k] = {g: math.log(probability[g]) for g in kept}
    return logp, backoff


def _logp(logp: list[dict], backoff: list[dict], context: tuple[int, ...], symbol: int, uniform: float) -> float:
    """log P(symbol | context) from the orders built so far, as `lookup` reads the finished tables."""
    total = 0.0
    for start in range(len(context) + 1):
        shorter = context[start:]
        p = logp[len(shorter)].get((shorter, symbol))
        if p is not None:
            return total + p
        total += backoff[len(shorter)].get(shorter, 0.0)
    return total + uniform
