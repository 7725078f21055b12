"""Small SQL helpers that differ between PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def bulk_insert(model, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Insert many rows set-based: COPY on PostgreSQL, multi-row INSERT elsewhere. Returns the row count."""
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return 0
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if is_postgres():
            raw = cursor.cursor  # psycopg 3 cursor
            with raw.copy(f"COPY {table(model)} ({quoted}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            # SQLite: as many rows per statement as its variable limit allows.
            per = max(1, 32000 // len(columns))
            placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
            for start in range(0, len(rows), per):
                chunk = rows[start : start + per]
                sql = f"INSERT INTO {table(model)} ({quoted}) VALUES " + ", ".join([placeholders] * len(chunk))
                cursor.execute(sql, [v for row in chunk for v in row])
    return len(rows)


def in_clause(values: Sequence) -> tuple[str, list]:
    """`IN (%s, …)` for a list of values (callers chunk very long lists)."""
    return "(" + ", ".join(["%s"] * len(values)) + ")", list(values)


def chunks(values: Sequence, size: int = 10000):
    for start in range(0, len(values), size):
        yield values[start : start + size]


__all__ = ["is_postgres", "table", "bulk_insert", "in_clause", "chunks"]
