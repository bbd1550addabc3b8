"""A character n-gram language model: how likely a character is after the few before it.

A line model reads each character from the pixels alone; where the writing is unclear (hands,
faded print) it cannot tell "mentat" from "mental". Weighing the CTC head's readings by how
text usually goes picks the likelier one, as n-gram models do in handwriting recognisers
(PyLaia, Kaldi-based HTR). The model is Witten-Bell interpolated: each context's own counts
are trusted in proportion to how often it was seen, the rest of the probability comes from the
shorter context.

It is kept as sorted integer keys so the compiled CTC search (pipeline.ctc_beam) can look a
character up with a binary search. An n-gram's key writes its symbols as base-256 digits
behind a leading 1, so different lengths never collide. Symbol 0 is the start of a line, the
last symbol stands for every character the model never saw.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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

    @property
    def unknown(self) -> int:
        return len(self.alphabet) + 1

    @property
    def uniform_logp(self) -> float:
        """Below the unigrams: every symbol but the line start equally likely."""
        return -math.log(len(self.alphabet) + 1)

    def symbols(self, text: str) -> list[int]:
        index = {c: i + 1 for i, c in enumerate(self.alphabet)}
        return [index.get(c, self.unknown) for c in text]

    def symbol_of_tokens(self, tokens: dict[str, int], size: int) -> np.ndarray:
        """For a tokenizer's vocabulary ({text: id}, ids below `size`), each id's symbol: the
        unknown symbol for tokens that are not one known character (specials, merged pieces)."""
        index = {c: i + 1 for i, c in enumerate(self.alphabet)}
        table = np.full(size, self.unknown, dtype=np.int64)
        for text, token in tokens.items():
            if len(text) == 1 and text in index and 0 <= token < size:
                table[token] = index[text]
        return table

    def logp(self, context: Sequence[int], symbol: int) -> float:
        """log P(symbol | context), context as symbols (0 = line start), oldest first."""
        return float(lookup(pack(context[-(self.order - 1):] if self.order > 1 else ()),
                            min(len(context), self.order - 1), symbol, self.ngram_keys,
                            self.ngram_logp, self.context_keys, self.context_backoff,
                            self.uniform_logp))

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


def pack(symbols: Sequence[int]) -> int:
    key = 1
    for s in symbols:
        key = key * 256 + int(s)
    return key


def lookup(context_key, context_len, symbol, ngram_keys, ngram_logp, context_keys,
           context_backoff, uniform_logp):
    """log P(symbol | context): the longest stored n-gram ending in it, plus the backoff weights
    of the longer contexts that were seen but never followed by it. Plain arithmetic on arrays,
    so numba compiles it unchanged for the search (pipeline.ctc_beam)."""
    backoff = 0.0
    for used in range(context_len, -1, -1):
        # The context's last `used` symbols, keeping the leading 1.
        divisor = 256 ** used
        digits = context_key % divisor
        key = (divisor + digits) * 256 + symbol
        i = np.searchsorted(ngram_keys, key)
        if i < ngram_keys.shape[0] and ngram_keys[i] == key:
            return backoff + ngram_logp[i]
        j = np.searchsorted(context_keys, divisor + digits)
        if j < context_keys.shape[0] and context_keys[j] == divisor + digits:
            backoff += context_backoff[j]
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
    lm = CharLM(alphabet, order, *(np.zeros(0) for _ in range(4)))
    # counts[k][(context, symbol)] for contexts of k symbols
    counts: list[Counter] = [Counter() for _ in range(order)]
    for line in lines:
        symbols = [0] * (order - 1) + lm.symbols(line)
        for i in range(order - 1, len(symbols)):
            for k in range(order):
                # A context may not reach back over more than one line start.
                if k >= 2 and symbols[i - k + 1] == 0:
                    break
                counts[k][(tuple(symbols[i - k:i]), symbols[i])] += 1
        if progress is not None:
            progress(1)
    totals: list[Counter] = [Counter() for _ in range(order)]  # context -> n (all followers)
    kinds: list[Counter] = [Counter() for _ in range(order)]  # context -> distinct followers
    for k in range(order):
        for (context, _), n in counts[k].items():
            totals[k][context] += n
            kinds[k][context] += 1
    # Probabilities shortest context first: each order interpolates with the one below it.
    uniform = 1.0 / (len(alphabet) + 1)
    probability: list[dict] = [{} for _ in range(order)]
    ngram_keys, ngram_logp, context_keys, context_backoff = [], [], [], []
    for k in range(order):
        for context, n in totals[k].items():
            weight = n / (n + kinds[k][context])
            context_keys.append(pack(context))
            context_backoff.append(math.log1p(-weight))
        for (context, symbol), n in counts[k].items():
            lower = probability[k - 1].get((context[1:], symbol)) if k else uniform
            if lower is None:  # pruned below: the shorter context's own backoff chain
                lower = math.exp(lm_logp_from(probability, totals, kinds, context[1:], symbol, uniform))
            weight = totals[k][context] / (totals[k][context] + kinds[k][context])
            p = weight * n / totals[k][context] + (1 - weight) * lower
            probability[k][(context, symbol)] = p
        if k + 1 >= PRUNE_FROM_ORDER:
            kept = {g: p for g, p in probability[k].items() if counts[k][g] >= min_count}
        else:
            kept = probability[k]
        for (context, symbol), p in kept.items():
            ngram_keys.append(pack((*context, symbol)))
            ngram_logp.append(math.log(p))
        probability[k] = kept
    n_order, c_order = np.argsort(ngram_keys), np.argsort(context_keys)
    return CharLM(
        alphabet, order,
        np.asarray(ngram_keys, dtype=np.int64)[n_order], np.asarray(ngram_logp, dtype=np.float32)[n_order],
        np.asarray(context_keys, dtype=np.int64)[c_order],
        np.asarray(context_backoff, dtype=np.float32)[c_order],
    )


def lm_logp_from(probability, totals, kinds, context, symbol, uniform) -> float:
    """log P(symbol | context) while building, from the probabilities kept so far."""
    backoff = 0.0
    for start in range(len(context) + 1):
        shorter = context[start:]
        p = probability[len(shorter)].get((shorter, symbol))
        if p is not None:
            return backoff + math.log(p)
        n = totals[len(shorter)].get(shorter)
        if n:
            backoff += math.log1p(-n / (n + kinds[len(shorter)][shorter]))
    return backoff + math.log(uniform)
