"""What the tests read back: the app's table, directly on the server, around any fault."""

from __future__ import annotations

import asyncpg


class UploadsTable:
    """The ``uploads`` table as the tests see it, on a connection of their own."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def count(self, filename: str | None = None) -> int:
        """Rows in the table, or of one upload."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            if filename is None:
                count = await conn.fetchval("SELECT count(*) FROM uploads")
            else:
                count = await conn.fetchval(
                    "SELECT count(*) FROM uploads WHERE filename = $1", filename
                )
        finally:
            await conn.close()
        return int(count)
