"""The lockstep protocol two ``ab`` sides and their coordinator speak: JSON lines over a socket pair.

See ``ab.py`` for the messages and their order. Kept apart so that a side (which runs in another install's
process) and the coordinator share exactly one definition of the wire format.
"""

from __future__ import annotations

import json
import socket
import statistics
from typing import Any

from ..results.schema import PairedRatio

#: The lockstep protocol's version: a side must speak exactly this one.
PROTOCOL = 1

SIDES = ("a", "b")


class ProtocolError(Exception):
    """The other end broke the protocol, closed the connection, or went silent."""


class Channel:
    """Newline-delimited JSON messages over a connected socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self._buffer = sock, b""

    def send(self, kind: str, **fields: Any) -> None:
        self.sock.sendall(json.dumps({"type": kind, **fields}).encode() + b"\n")

    def read_available(self) -> list[dict[str, Any]]:
        """The messages that one read brings in (the socket is readable); raises ProtocolError at end of stream."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ProtocolError("connection closed")
        self._buffer += chunk
        return self._complete()

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message, waiting at most ``timeout`` seconds (None: until one comes or the stream ends)."""
        while True:
            messages = self._complete(limit=1)
            if messages:
                return messages[0]
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                raise ProtocolError(f"no message within {timeout:g} s") from None
            if not chunk:
                raise ProtocolError("connection closed")
            self._buffer += chunk

    def _complete(self, limit: int | None = None) -> list[dict[str, Any]]:
        messages = []
        while b"\n" in self._buffer and (limit is None or len(messages) < limit):
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                raise ProtocolError(f"not a protocol message: {line[:80]!r}") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ProtocolError(f"not a protocol message: {line[:80]!r}")
            messages.append(message)
        return messages


def paired_ratio(own: list[float | None], partner: list[float | None]) -> PairedRatio | None:
    """This side's steps over its partner's, step k against step k; None when no step pairs."""
    pairs = [(o, p) for o, p in zip(own, partner, strict=False) if o is not None and p is not None and p > 0]
    if not pairs or not sum(p for _, p in pairs):
        return None
    return PairedRatio(train_s=sum(o for o, _ in pairs) / sum(p for _, p in pairs),
                       step_median=statistics.median(o / p for o, p in pairs), steps=len(pairs))  # fmt: skip
