"""The bounds a `BillQuery` checks: an aware window that may be a single instant, and a page
size of at least one."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

import pytest

from cdr_connector.api.models import BillQuery
from cdr_connector.config import Filters
from tests.unit.test_api_client import PBX

MOMENT = datetime(2024, 3, 1, 12, 0, 0, tzinfo=PBX)


class _NoOffset(tzinfo):
    """A time zone that cannot say its offset: such a datetime is naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None


def bill_query(start: datetime = MOMENT, end: datetime = MOMENT, page_size: int = 10) -> BillQuery:
    return BillQuery(
        start=start, end=end, syncflag=1, page=1, page_size=page_size, filters=Filters()
    )


def test_a_window_of_one_instant_is_a_query() -> None:
    assert bill_query().as_form(PBX)["starttime"] == bill_query().as_form(PBX)["endtime"]
    with pytest.raises(ValueError, match="is before start"):
        bill_query(end=MOMENT - timedelta(seconds=1))


def test_a_page_holds_at_least_one_bill() -> None:
    assert bill_query(page_size=1).page_size == 1
    with pytest.raises(ValueError, match=r"page_size must be 1\.\.1000, got 0"):
        bill_query(page_size=0)


def test_a_time_zone_without_an_offset_is_naive() -> None:
    moment = datetime(2024, 3, 1, 12, 0, 0, tzinfo=_NoOffset())
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        bill_query(start=moment, end=moment)
