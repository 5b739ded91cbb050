"""The fund view's filters from a query string: defaults, and a clear error for a bad one."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from investment_jobs.operations.fund_view import BadFilter, parse_filters


def test_by_default_the_last_30_stored_dates() -> None:
    f = parse_filters(None, None, None, None, latest=date(2026, 3, 31))
    assert (f.start, f.end, f.product, f.currency) == (date(2026, 3, 2), date(2026, 3, 31), None, None)


def test_an_empty_book_shows_the_30_days_up_to_today() -> None:
    f = parse_filters(None, None, None, None, latest=None)
    assert f.end == datetime.now(UTC).date()  # clock-ok: the page default under test
    assert (f.end - f.start).days == 29


def test_given_filters_are_kept_and_the_currency_is_lowercased() -> None:
    f = parse_filters("2026-01-01", "2026-01-31", "p1", "USD", latest=date(2026, 3, 31))
    assert (f.start, f.end, f.product, f.currency) == (date(2026, 1, 1), date(2026, 1, 31), "p1", "usd")


@pytest.mark.parametrize(("start", "end", "currency", "message"), [
    ("2026-13-01", None, None, "dates are YYYY-MM-DD"),
    ("2026-02-01", "2026-01-01", None, "the range starts (2026-02-01) after it ends (2026-01-01)"),
    (None, None, "dollars", "currency is a three-letter ISO code"),
])
def test_a_bad_filter_says_what_is_wrong(start: str | None, end: str | None, currency: str | None,
                                         message: str) -> None:
    with pytest.raises(BadFilter, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_filters(start, end, None, currency, latest=date(2026, 3, 31))
