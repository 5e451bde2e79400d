"""A throwaway PostgreSQL schema per ledger under test, so checks never share state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["postgres_schema"]


@contextmanager
def postgres_schema(base_url: str, *, prefix: str = "t_") -> Iterator[str]:
    """Create a fresh schema in the database at `base_url`; yield a URL whose tables go there.

    The schema is dropped afterwards (best effort, with a short lock timeout: a connection a
    check left open must not hang the cleanup). The yielded URL sets the schema as the
    `search_path` (psycopg `options`), so a ledger opened on it creates its tables there.
    """
    schema = f"{prefix}{uuid.uuid4().hex[:12]}"
    engine = create_engine(base_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        engine = create_engine(base_url)
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        except Exception:  # left for a later cleanup; it never affects an outcome
            pass
        finally:
            engine.dispose()
