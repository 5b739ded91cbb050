"""The database's TWR chain and the Python one agree to the last digit, ties included."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from investment_jobs.money import chain_twr, twr_step

pytestmark = pytest.mark.integration

percent = st.decimals(min_value=Decimal("-99.9999999999"), max_value=Decimal("500"), places=10,
                      allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=st.lists(percent, min_size=1, max_size=25), seed=percent)
def test_window_chain_equals_python_chain(investment_db: str, days: list[Decimal], seed: Decimal) -> None:
    with psycopg.connect(investment_db) as conn:
        values = ",".join(f"({i}, {d}::numeric)" for i, d in enumerate(days))
        rows = conn.execute(
            f"""SELECT investment.twr_chain(%s::numeric, r) OVER (ORDER BY i) FROM (VALUES {values}) v(i, r)
                ORDER BY i""", (seed,)).fetchall()
    expected, running = [], seed
    for d in days:
        running = twr_step(running, d)
        expected.append(running)
    assert [r[0] for r in rows] == expected
    if seed == 0:
        assert chain_twr(days) == expected[-1]


@pytest.mark.parametrize("value", ["0.00000000005", "0.00000000015", "-0.00000000015", "-0.00000000025",
                                   "1.23456789125", "-7.5", "0", "99.99999999995"])
def test_round_half_even(investment_db: str, value: str) -> None:
    from decimal import ROUND_HALF_EVEN

    with psycopg.connect(investment_db) as conn:
        got = conn.execute("SELECT investment.round_half_even(%s::numeric, 10)", (value,)).fetchone()[0]
    assert got == Decimal(value).quantize(Decimal("1e-10"), rounding=ROUND_HALF_EVEN)


TIES = ["0.00000000005", "0.00000000015", "-0.00000000015", "-0.00000000025", "1.23456789125", "-7.5", "0",
        "99.99999999995", "-99.99999999995", "12.000000000050000000001", "-3.00000000004999999999", "5E-11"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.sampled_from(TIES), st.decimals(min_value=-1000, max_value=1000, places=22).map(str),
                 st.decimals(min_value=-1000, max_value=1000, places=10).map(lambda d: str(d) + "5")))
def test_the_inlined_half_even_of_the_chain_step_rounds_as_python(investment_db: str, value: str) -> None:
    """Migration 0012's round_half_even_10 (what twr_step now calls) against Decimal's half-even."""
    from decimal import ROUND_HALF_EVEN

    with psycopg.connect(investment_db) as conn:
        got = conn.execute("SELECT investment.round_half_even_10(%s::numeric), investment.round_half_even(%s::numeric, 10)",
                           (value, value)).fetchone()
    expected = Decimal(value).quantize(Decimal("1e-10"), rounding=ROUND_HALF_EVEN)
    assert got == (expected, expected)
