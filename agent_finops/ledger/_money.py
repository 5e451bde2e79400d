"""How every ledger backend holds money: exact `Decimal`, 18 decimal places, below 1e20.

PostgreSQL keeps money in `NUMERIC(38, 18)`: 20 digits before the point and 18 after. So
that a record reads back the same from every backend, every backend applies that quantum:
an amount with more than `MONEY_PLACES` decimals is rounded half-even to 18 places when it
is stored (costs of real calls never have that many: a token price is at most a few dozen
significant digits of a dollar per million), and an amount of `MONEY_LIMIT` or more is
refused (`LedgerError`, not retryable) instead of being stored on one backend and rejected
by another. Sums are exact: they run in an 80-digit context, so 38-digit values never round.
"""

from __future__ import annotations

from decimal import Context, Decimal

MONEY_PLACES = 18
"""Decimal places a stored amount keeps (more are rounded half-even)."""
MONEY_LIMIT = Decimal(10) ** 20
"""Amounts must be below this in absolute value (NUMERIC(38, 18) has 20 integer digits)."""

EXACT = Context(prec=80)
"""Arithmetic context: NUMERIC(38, 18) sums never round (the default context keeps 28 digits)."""
QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
_ONE = Decimal(1)


def stored_money(value: Decimal) -> Decimal:
    """`value` as every backend stores it; ValueError if it cannot be stored at all."""
    if not value.is_finite() or value.copy_abs() >= MONEY_LIMIT:
        raise ValueError(f"money amount {value} is out of range (finite, below {MONEY_LIMIT:.0e})")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_PLACES:
        return value.quantize(QUANTUM, context=EXACT)
    return value


def tidy(value: Decimal) -> Decimal:
    """NUMERIC(38, 18) pads 18 decimals; drop trailing zeros without changing the value."""
    if value == value.to_integral_value():
        return value.quantize(_ONE, context=EXACT)
    return value.normalize(EXACT)


def money_text(value: Decimal | None) -> str | None:
    """Exact decimal text, no exponent, no trailing zeros (None stays None): money in data."""
    return None if value is None else format(tidy(value), "f")


NANO = Decimal(1).scaleb(-9)
HUGE_REST = -1
"""`cost_rest` of a priced amount too large for `cost_nano` (never a real remainder)."""
_REST_PER_NANO = 10**9
_INT64 = 2**63 - 1


def split_money(value: Decimal | None) -> tuple[int | None, int | None]:
    """`value` as two integers SQL sums exactly: whole nano-dollars, and 1e-18 dollars below.

    `value == nano * 1e-9 + rest * 1e-18` with `0 <= rest < 1e9`, for any stored amount
    (at most 18 decimals). (None, None) for an unknown cost. An amount beyond what a 64-bit
    integer holds as nano-dollars (about $9.2 billion) is `(None, HUGE_REST)`: sums read its
    exact amount from the row instead (and take back the -1 it added to the `rest` sum).
    """
    if value is None:
        return None, None
    atto = int(value.scaleb(MONEY_PLACES, EXACT))
    nano, rest = divmod(atto, _REST_PER_NANO)
    if abs(nano) > _INT64:
        return None, HUGE_REST
    return nano, rest


def join_money(nano: int | Decimal | None, rest: int | Decimal | None) -> Decimal:
    """The exact amount of summed `split_money` parts (None sums are zero)."""
    total = EXACT.add(
        EXACT.multiply(Decimal(nano or 0), NANO), Decimal(rest or 0).scaleb(-MONEY_PLACES, EXACT)
    )
    return tidy(total)
