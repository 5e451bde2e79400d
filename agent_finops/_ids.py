"""`new_id()`: unique record ids without a system call per id.

`uuid.uuid4()` reads `os.urandom` for every id; that system call releases the GIL, and on
the guarded hot path a background thread (the ledger writer) then keeps it for up to a
switch interval. An id here is a random 64-bit prefix, drawn once per process (again in a
forked child), followed by a 64-bit counter: 32 hex digits, like `uuid4().hex`, unique
across processes with the probability of a 64-bit collision of the prefixes.
"""

from __future__ import annotations

import itertools
import os

__all__ = ["new_id"]

_prefix = os.urandom(8).hex()
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex()
    _counter = itertools.count()


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A new 32-hex-digit id, unique across threads and processes."""
    return f"{_prefix}{next(_counter):016x}"  # next() on a count is atomic under the GIL
