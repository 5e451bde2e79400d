"""The frames the process writer and its child exchange over their two pipes.

A frame is a 13-byte header (kind, sequence number, payload length) and its payload. The
parent sends `OPEN` (the ledger to open), then `RECORDS` (a packed batch; the sequence
number is the group's) and `FLUSH` (no payload; the sequence number of the last group sent
before it). The child answers `ACK` (payload: its counters) once it has written every
group up to that sequence number: for each `FLUSH`, and about every `ACK_EVERY` seconds
while it writes; and `FAILED` (payload: the reason) if it cannot open the ledger.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Final

__all__ = [
    "ACK",
    "FAILED",
    "FLUSH",
    "HEADER",
    "OPEN",
    "RECORDS",
    "frame_from",
    "read_frame",
    "write_frame",
]

HEADER: Final = struct.Struct(">cQI")
OPEN: Final = b"O"
RECORDS: Final = b"R"
FLUSH: Final = b"F"
ACK: Final = b"A"
FAILED: Final = b"E"


def write_frame(fd: int, kind: bytes, seq: int, payload: bytes) -> None:
    """Write one whole frame to `fd` (blocking while the pipe is full)."""
    data = memoryview(HEADER.pack(kind, seq, len(payload)) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_frame(fd: int) -> tuple[bytes, int, bytes] | None:
    """The next frame from `fd`, or None at the end of the stream."""
    return frame_from(lambda size: _read_exact(fd, size))


def frame_from(take: Callable[[int], bytes | None]) -> tuple[bytes, int, bytes] | None:
    """The next frame from `take(n)` (n bytes, or None at the end), or None at the end."""
    header = take(HEADER.size)
    if header is None:
        return None
    kind, seq, length = HEADER.unpack(header)
    payload = take(length) if length else b""
    if payload is None:
        return None  # the writer died mid-frame: the partial frame is not delivered
    return kind, seq, payload


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
