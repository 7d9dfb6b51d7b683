"""Domain helpers."""

from __future__ import annotations


def test_iso_ms_matches_datetime():
    from datetime import UTC, datetime

    from tradeconsole.core.domain import iso_ms

    for t in (0, -1, 1_660_000_000_123, 1_672_531_199_999, 951_782_400_000):  # incl. a leap day
        ref = datetime.fromtimestamp(t // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{t % 1000:03d}Z"
        assert iso_ms(t) == ref


def test_candle_validity():
    from tradeconsole.core.domain import Candle

    assert Candle(0, 1.0, 2.0, 0.5, 1.5, 1.0, 1).is_valid()
    assert not Candle(0, float("nan"), 2.0, 0.5, 1.5, 1.0, 1).is_valid()
    assert not Candle(0, 1.0, 1.2, 0.5, 1.5, 1.0, 1).is_valid()  # close above high
    assert not Candle(0, 1.0, 2.0, 0.5, 1.5, -1.0, 1).is_valid()
    assert not Candle(0, 0.0, 2.0, 0.0, 1.5, 1.0, 1).is_valid()
