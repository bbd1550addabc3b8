"""Text for synthetic lines: document-like sentences, names, numbers, dates, prices, codes and receipt lines."""

from __future__ import annotations

import glob
import os
import random
import re
import string
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

DICT_PATHS = ("/usr/share/dict/words", "/usr/share/dict/american-english")
# Plain-text prose that Debian installs: licence texts and package descriptions read like documents.
PROSE_GLOBS = ("/usr/share/doc/*/copyright", "/usr/share/common-licenses/*")
# Debian's fortunes: quotations, verse and anecdotes, the sentence-case English of letters and
# diaries (licence text is legal capitals, names and years). Data files have no extension.
BOOK_GLOBS = ("/usr/share/games/fortunes/[a-z]*",)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FALLBACK_WORDS = _words(
    "the of and to in a is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no will more can "
    "about said time only new some could these two may first then do any like my now over such our man "
    "me even most made after also did many before must through back years where much your way well down"
)

FIRST_NAMES = _words(
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Margaret "
    "Jean Pierre Marie Hans Jürgen Søren Zoë José Chloé François Ángel Björn Renée Müller Tan Wei Siti"
)
LAST_NAMES = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Wilson "
    "Anderson Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson Walker Young "
    "O'Brien McDonald Dupont Schröder Kallianpur Bentham Nakamura Novak Ibrahim Rossi Fernández"
)
MONTHS = _words(
    "January February March April May June July August September October November December"
)
RECEIPT_WORDS = _words(
    "TOTAL SUBTOTAL TAX GST VAT CASH CHANGE VISA MASTERCARD QTY PRICE AMOUNT DISCOUNT ROUNDING ITEM "
    "INVOICE RECEIPT NO DATE TIME TEL FAX THANK YOU PLEASE COME AGAIN MEMBER POINTS BALANCE DUE PAID "
    "SDN BHD LTD INC STORE CASHIER TABLE PAX SERVICE CHARGE NETT ROUND ADJ EXCL INCL"
)
RECEIPT_ITEMS = _words(
    "Milk Bread Eggs Rice Sugar Coffee Tea Water Chicken Beef Apple Banana Soap Tissue Pen Notebook "
    "Battery Cable Tape Glue Paper Mineral Noodles Oil Salt Butter Cheese Yogurt Juice Snack Candy"
)
CURRENCIES = ("$", "£", "€", "RM", "USD ", "EUR ", "")
# Column headers and shop names on real receipts are full of bracketed currencies and slashes.
RECEIPT_HEADERS = _words(
    "AMT QTY U/P PRICE DESC DESCRIPTION TOTAL DISC TAX GST AMOUNT ITEM CODE S/B SDN.BHD. ENT. "
    "TRADING MART RESTAURANT KEDAI HARDWARE STATIONERY BOOKSTORE PETROL KIOSK SUPERMARKET"
)
UNITS = ("L", "ML", "G", "KG", "PCS", "PC", "X", "M", "CM", "'S")


def asset_paths(relative: str) -> tuple[str, ...]:
    """The packed copy under $QUIRE_TRAIN_ASSETS (a GPU host has no Debian word lists or docs)."""
    root = os.environ.get("QUIRE_TRAIN_ASSETS")
    return (str(Path(root) / relative),) if root else ()


@lru_cache(maxsize=1)
def dictionary_words() -> tuple[str, ...]:
    """English words from the installed word list (wamerican), fallback to a built-in list."""
    for path in asset_paths("words") + DICT_PATHS:
        p = Path(path)
        if p.exists():
            words = [w.strip() for w in p.read_text(encoding="utf-8", errors="ignore").splitlines()]
            words = [w for w in words if w and "'s" not in w]
            if words:
                return tuple(words)
    return _FALLBACK_WORDS


@lru_cache(maxsize=1)
def prose_lines(max_files: int = 400, max_lines: int = 60000) -> tuple[str, ...]:
    """Lines of real English prose from licence and copyright files installed on the machine."""
    out: list[str] = []
    files: list[str] = []
    for pattern in asset_paths("prose/*.txt") + PROSE_GLOBS:
        files.extend(sorted(glob.glob(pattern)))
    for f in files[:max_files]:
        try:
            text = Path(f).read_text(encoding="utf-8", errors="ignore")
        except OSError:
            continue
        for line in text.splitlines():
            line = " ".join(line.split()).strip(" .")
            # Skip rulers, field names and URL-only lines; keep sentence-like text.
            if len(line) < 12 or line.count(" ") < 2 or re.fullmatch(r"[-=*#_ .]+", line):
                continue
            out.append(line)
            if len(out) >= max_lines:
                return tuple(out)
    return tuple(out) or (" ".join(_FALLBACK_WORDS[:12]),)


@lru_cache(maxsize=1)
def book_passages(max_passages: int = 20000) -> tuple[str, ...]:
    """Passages of sentence-case English (one fortune each, whitespace joined) from BOOK_GLOBS."""
    files: list[str] = []
    for pattern in asset_paths("books/*.txt") + BOOK_GLOBS:
        files.extend(f for f in sorted(glob.glob(pattern)) if "." not in Path(f).name or f.endswith(".txt"))
    out: list[str] = []
    for f in files:
        try:
            text = Path(f).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            continue  # the generator draws from the vocabulary's characters; skip other encodings
        for passage in re.split(r"^%$", text, flags=re.MULTILINE):
            passage = " ".join(passage.split())
            letters = sum(c.isalpha() or c == " " for c in passage)
            # Skip ASCII art and tables: running text is nearly all letters and spaces.
            if len(passage) >= 20 and letters >= 0.85 * len(passage) and passage.isprintable():
                out.append(passage)
                if len(out) >= max_passages:
                    return tuple(out)
    return tuple(out)


def book_text(rng: random.Random, max_chars: int) -> str:
    """A run of words from a book passage, starting at a sentence or anywhere, whole words only;
    licence prose where no passages are installed."""
    passages = book_passages()
    if not passages:
        return prose(rng, max_chars)
    words = rng.choice(passages).split()
    if rng.random() < 0.5:
        start = rng.choice([i for i in range(len(words)) if i == 0 or words[i - 1][-1] in ".!?"])
    else:
        start = rng.randrange(len(words))
    out = ""
    for w in words[start:]:
        if len(out) + len(w) + 1 > max_chars:
            break
        out = f"{out} {w}" if out else w
    return out or words[start][:max_chars]


@lru_cache(maxsize=1)
def doubled_letter_words() -> tuple[str, ...]:
    """Dictionary words with a doubled letter ("levelling", "speed"): CTC must learn to split them."""
    words = tuple(w for w in dictionary_words() if re.search(r"([a-z])\1", w))
    return words or ("letter", "between", "speed", "all")


def _word(rng: random.Random) -> str:
    # Frequent short words make sentences look like running text rather than a word salad.
    r = rng.random()
    if r < 0.45:
        w = rng.choice(_FALLBACK_WORDS)
    elif r < 0.55:
        w = rng.choice(doubled_letter_words())
    else:
        w = rng.choice(dictionary_words())
    r = rng.random()
    if r < 0.08:
        return w.capitalize()
    if r < 0.11:
        return w.upper()
    return w


def number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return str(rng.randint(0, 99))
    if kind < 0.55:
        return str(rng.randint(100, 99999))
    if kind < 0.75:
        return f"{rng.uniform(0, 1000):.{rng.choice((1, 2, 3))}f}"
    if kind < 0.85:
        return f"{rng.randint(1, 999)},{rng.randint(0, 999):03d}"
    return f"{rng.randint(1, 99)}%"


def price(rng: random.Random) -> str:
    value = rng.choice((rng.uniform(0, 20), rng.uniform(0, 200), rng.uniform(0, 5000)))
    cur = rng.choice(CURRENCIES)
    return f"{cur}{value:,.2f}" if rng.random() < 0.3 else f"{cur}{value:.2f}"


def date(rng: random.Random) -> str:
    d, m, y = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1950, 2030)
    fmt = rng.randrange(6)
    if fmt == 0:
        return f"{d:02d}/{m:02d}/{y}"
    if fmt == 1:
        return f"{y}-{m:02d}-{d:02d}"
    if fmt == 2:
        return f"{d} {MONTHS[m - 1]} {y}"
    if fmt == 3:
        return f"{MONTHS[m - 1]} {d}, {y}"
    if fmt == 4:
        return f"{d:02d}.{m:02d}.{y % 100:02d}"
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"


def code(rng: random.Random) -> str:
    n = rng.randint(4, 12)
    alphabet = string.ascii_uppercase + string.digits
    body = "".join(rng.choice(alphabet) for _ in range(n))
    if rng.random() < 0.4:
        cut = rng.randint(1, n - 1)
        body = body[:cut] + rng.choice("-/.") + body[cut:]
    return body


def name(rng: random.Random) -> str:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    r = rng.random()
    if r < 0.3:
        return f"{first[0]}. {last}"
    if r < 0.4:
        return f"{last.upper()}, {first}"
    return f"{first} {last}"


def sentence(rng: random.Random, n_words: int) -> str:
    """Running text with punctuation, numbers, names and quotes mixed in."""
    parts: list[str] = []
    for _ in range(n_words):
        r = rng.random()
        if r < 0.05:
            tok = number(rng)
        elif r < 0.07:
            tok = name(rng)
        elif r < 0.08:
            tok = date(rng)
        elif r < 0.09:
            tok = price(rng)
        else:
            tok = _word(rng)
        p = rng.random()
        if p < 0.08:
            tok += ","
        elif p < 0.11:
            tok += rng.choice((".", ";", ":", "?", "!"))
        elif p < 0.13:
            tok = (
                rng.choice(("(", "[", '"', "'", "“", "‘"))
                + tok
                + rng.choice((")", "]", '"', "'", "”", "’"))
            )
        elif p < 0.14:
            tok += rng.choice(("'s", "'t", "-"))
        parts.append(tok)
    text = " ".join(parts)
    if text and rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.12:
        text = text + rng.choice((" -", "-", " —", " –", "."))
    return text


def quantity(rng: random.Random) -> str:
    """Pack sizes as printed on items: 6X1.25L, 500G, 2 PCS."""
    size = rng.choice((str(rng.randint(1, 999)), f"{rng.uniform(0.1, 5):.{rng.choice((1, 2))}f}"))
    unit = rng.choice(UNITS)
    pack = f"{rng.randint(2, 24)}X" if rng.random() < 0.3 else ""
    return f"{pack}{size}{' ' if rng.random() < 0.3 else ''}{unit}"


def receipt_header(rng: random.Random) -> str:
    """Column headers and shop lines: AMT(RM), U/P (RM), 99 SPEED MART S/B (519537-X)."""
    words = [rng.choice(RECEIPT_HEADERS) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.25:
        # Some printers: "Amt(RM)", "Qty", "Change : RM"; codes such as U/P stay as they are.
        words = [w.capitalize() if w.isalpha() else w for w in words]
    if rng.random() < 0.5:
        cur = rng.choice(("RM", "$", "MYR", "SGD", "USD"))
        words[-1] += f"{rng.choice(('', ' '))}({cur})"
    if rng.random() < 0.3:
        words.insert(0, rng.choice(LAST_NAMES).upper())
    if rng.random() < 0.3:
        words.append(f"({rng.randint(1000, 9999999)}-{rng.choice(string.ascii_uppercase)})")
    return " ".join(words)


def receipt_line(rng: random.Random) -> str:
    """Short, often upper-case receipt lines: totals, items with quantities, headers."""
    if rng.random() < 0.2:
        return receipt_header(rng)
    r = rng.random()
    if r < 0.3:
        label = " ".join(rng.choice(RECEIPT_WORDS) for _ in range(rng.randint(1, 2)))
        if rng.random() < 0.3:
            label = label.capitalize()
        sep = rng.choice((" ", "  ", ": ", " : "))
        return f"{label}{sep}{price(rng)}"
    if r < 0.5:
        item = " ".join(rng.choice(RECEIPT_ITEMS) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.4:
            item += f" {quantity(rng)}"
        qty = rng.randint(1, 12)
        line = (
            f"{item} {qty}x{rng.uniform(0.2, 50):.2f}"
            if rng.random() < 0.5
            else f"{qty} {item} {price(rng)}"
        )
        return line.upper() if rng.random() < 0.5 else line
    if r < 0.6:
        return price(rng) if rng.random() < 0.7 else number(rng)
    if r < 0.7:
        return f"{rng.choice(('TEL', 'Tel', 'FAX', 'GST No', 'Reg No', 'INV', 'Bill'))}{rng.choice((': ', ' ', '. '))}{code(rng)}"
    if r < 0.8:
        return f"{date(rng)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
    text = sentence(rng, rng.randint(1, 5))
    return text.upper() if rng.random() < 0.6 else text


def prose(rng: random.Random, max_chars: int) -> str:
    """A real prose line, cut at a word boundary to a random length."""
    line = rng.choice(prose_lines())
    words = line.split()
    start = rng.randrange(max(1, len(words) // 3)) if rng.random() < 0.5 else 0
    out = " ".join(words[start:])
    if len(out) > max_chars:
        out = out[:max_chars].rsplit(" ", 1)[0] or out[:max_chars]
    return out


def text_line(rng: random.Random, kind: str = "printed", max_chars: int = 90) -> str:
    """One line of text in the style of `kind` ('printed', 'receipt' or 'handwritten')."""
    if kind == "receipt":
        text = receipt_line(rng)
    else:
        r = rng.random()
        short = kind == "handwritten"
        # Hands write letters, diaries and notes: mostly running sentence-case text.
        books = 0.45 if short else 0.15
        if r < 0.08:
            text = _word(rng)  # single words exist on pages: headings, captions, fragments
        elif r < 0.08 + books:
            text = book_text(rng, rng.randint(10, 60 if short else max_chars))
        elif r < 0.4 + books / 2:
            text = prose(rng, rng.randint(10, 50 if short else max_chars))
        elif r < 0.5 + books / 2:
            fields: Sequence[Callable[[random.Random], str]] = (name, date, code, number, price)
            text = " ".join(rng.choice(fields)(rng) for _ in range(rng.randint(1, 4)))
        else:
            text = sentence(rng, rng.randint(1, 9 if short else 15))
    text = " ".join(text.split())
    if len(text) > max_chars:  # cut at a word boundary where there is one: lines end with whole words
        cut = text[:max_chars]
        text = cut.rsplit(" ", 1)[0] if " " in cut and text[max_chars] != " " else cut
    return text.rstrip() or "a"


def language_model_lines(generated: int = 60_000, seed: int = 0) -> list[str]:
    """Text for the default character language model (pipeline.char_lm): every book passage and
    prose line, cut into line-length runs as a page would break them, and `generated` lines of
    each kind the synthetic lines draw (receipts, names, dates, codes), so the model knows the
    same kinds of text the recognition model was trained to read."""
    rng = random.Random(seed)
    lines: list[str] = []
    for passage in book_passages():
        words = passage.split()
        start = 0
        while start < len(words):
            n = rng.randint(3, 12)
            lines.append(" ".join(words[start:start + n]))
            start += n
    lines += prose_lines()
    lines += [text_line(rng, kind) for kind in ("printed", "receipt", "handwritten") for _ in range(generated)]
    return lines
