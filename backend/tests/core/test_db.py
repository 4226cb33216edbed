from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, MetaData, Table, insert, select
from sqlalchemy.engine import Connection

from app.core.db import UTCDateTime
from app.core.text import storable


def test_utc_datetimes_come_back_aware_and_in_utc(connection: Connection) -> None:
    table = Table("utc_probe", MetaData(), Column("at", UTCDateTime()))
    table.create(connection)
    plus_two = datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    connection.execute(insert(table).values(at=plus_two))
    stored = connection.execute(select(table.c.at)).scalar_one()
    assert stored == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert stored.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(connection: Connection) -> None:
    table = Table("utc_probe_naive", MetaData(), Column("at", UTCDateTime()))
    table.create(connection)
    with pytest.raises(Exception, match="naive datetimes"):
        connection.execute(insert(table).values(at=datetime(2026, 3, 1, 12, 30)))


def test_storable_text_has_no_nul_and_no_unpaired_surrogate() -> None:
    assert storable("a\x00b\ud800c") == "ab?c"
    assert storable("plain é 漢") == "plain é 漢"
