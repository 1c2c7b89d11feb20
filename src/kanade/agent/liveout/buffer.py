"""One output stream's bytes not published yet: at most ``cap`` of them, the oldest dropped
(and counted) when more arrive — the script is never slowed down, the newest output is kept
(pure, no I/O)."""

from __future__ import annotations


class TailBuffer:
    """Fed with whatever the script writes; taken from in order. Every byte fed is, in the
    end, either taken or counted as elided: ``elided`` bytes were dropped just before the
    first byte still held."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()
        self.elided = 0

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if len(data) >= self.cap:
            self.elided += len(self._buf) + len(data) - self.cap
            self._buf = bytearray(data[len(data) - self.cap :])
            return
        self._buf += data
        over = len(self._buf) - self.cap
        if over > 0:
            del self._buf[:over]
            self.elided += over

    def take(self, n: int) -> tuple[int, bytes]:
        """``(bytes elided just before, up to n bytes)``; resets the elided count."""
        data = bytes(self._buf[:n])
        del self._buf[:n]
        elided, self.elided = self.elided, 0
        return elided, data
