"""Width-grouped batches of line IDs: lines of similar width pad little when batched together."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class WidthBatcher:
    """Collects (line_id, width) as pages are ingested and hands out batches of up to `size`.

    It waits until it holds a few batches' worth, so each batch is cut from a sorted pool
    (similar widths together) while recognition of early pages still starts before the end
    of a long document.
    """

    def __init__(self, size: int, pool_batches: int = 4) -> None:
        if size < 1:
            raise ValueError("batch size must be at least 1")
        self.size, self.pool = size, size * pool_batches
        self._buffer: list[tuple[int, int]] = []

    def add(self, lines: Iterable[tuple[int, int]]) -> Iterator[list[int]]:
        """Take lines in; yield the full batches that are ready."""
        self._buffer.extend(lines)
        if len(self._buffer) < self.pool:
            return
        self._buffer.sort(key=lambda item: (item[1], item[0]))
        full = len(self._buffer) - len(self._buffer) % self.size
        ready, self._buffer = self._buffer[:full], self._buffer[full:]
        for start in range(0, full, self.size):
            yield [line_id for line_id, _ in ready[start:start + self.size]]

    def flush(self) -> Iterator[list[int]]:
        """Everything left, in width order; the last batch may be short."""
        rest, self._buffer = sorted(self._buffer, key=lambda item: (item[1], item[0])), []
        for start in range(0, len(rest), self.size):
            yield [line_id for line_id, _ in rest[start:start + self.size]]
