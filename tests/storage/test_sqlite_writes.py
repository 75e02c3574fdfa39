"""SQLite's group commit: writes queued while one commits share its transaction, each in a
savepoint of its own."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ocinest.storage.database import Connection
from ocinest.storage.sqlite import SQLiteDatabase


async def test_writes_committed_together_fail_alone(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "meta.db")
    try:
        await db.write(lambda c: c.execute("CREATE TABLE t(x INTEGER PRIMARY KEY)"))

        def insert(x: int) -> int:
            def fn(c: Connection) -> int:
                c.execute("INSERT INTO t VALUES (?)", (x,))
                if x % 3 == 0:
                    raise ValueError(x)  # after its insert: that must be rolled back
                return x

            return fn

        writes = [db.write(insert(x), durable=x % 2 == 0) for x in range(1, 41)]
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        for x, outcome in zip(range(1, 41), outcomes, strict=True):
            if x % 3 == 0:
                assert isinstance(outcome, ValueError) and outcome.args == (x,)
            else:
                assert outcome == x
        # A constraint violation fails its write only.
        with pytest.raises(sqlite3.IntegrityError):
            await db.write(insert(1))
        rows = await db.read(lambda c: c.execute("SELECT x FROM t ORDER BY x").fetchall())
        assert [r[0] for r in rows] == [x for x in range(1, 41) if x % 3]
    finally:
        await db.close()
    # All of it is in the file, as another connection sees it.
    reopened = sqlite3.connect(tmp_path / "meta.db")
    assert reopened.execute("SELECT count(*) FROM t").fetchone()[0] == 27
    reopened.close()
