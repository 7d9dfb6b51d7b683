"""The simulated broker's per-candle rules, written once and used by every path.

``tradeconsole.core.broker.SimulatedFuturesBroker`` (paper trading, replay, the per-bar backtest
path) calls these functions candle by candle from Python; ``simulate`` calls the very same
functions in a loop over whole arrays for backtests nobody watches bar by bar, interpreted for
small runs and compiled with numba (``tradeconsole.core.jit.compiled``) for large ones. There is
one implementation of each rule, so the two paths cannot drift apart: the entry fill's
arithmetic (both fee conventions), the protective exits (seed: closes only; realistic: gaps
through a level fill at the open, intrabar worse case first, liquidation), the exit's PnL and
fee, funding at 00/08/16 UTC and slippage.

Everything is scalar IEEE arithmetic in the order the broker always used, without fastmath, so
compiled and interpreted callers get bit-identical numbers (``tests/backtest/test_compiled_step.py``
checks it on the shared data). numba's on-disk cache keeps the compilation out of every run
after the first on a machine.

``simulate`` covers strategies whose exits are the fixed percentages of ``StrategyParams``
(``Strategy.simple_exits`` without managed exits); anything else (exit plans, trailing stops,
exit signals, time exits) runs on the per-candle path, which still uses these functions for the
parts they cover.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tradeconsole.core.jit import kernel

_F64 = NDArray[np.float64]
_I64 = NDArray[np.int64]

__all__ = [
    "FUNDING_PERIOD_MS",
    "R_ENTRY_LONG",
    "R_ENTRY_SHORT",
    "R_LIQ",
    "R_NONE",
    "R_STOP",
    "R_TARGET",
    "close_amounts",
    "funding_due",
    "open_position",
    "protective_exit",
    "simulate",
    "slipped",
]

FUNDING_PERIOD_MS = 8 * 3_600_000
#: reason codes of the compiled functions (``tradeconsole.core.broker`` maps them to ``FillReason``)
R_NONE, R_ENTRY_LONG, R_ENTRY_SHORT, R_STOP, R_TARGET, R_LIQ = -1, 0, 1, 2, 3, 4


@kernel
def slipped(price: float, buy: bool, bps: float) -> float:
    """A market fill's price after ``bps`` of adverse slippage (a buy pays more, a sell gets less)."""
    if bps == 0.0:
        return price
    if buy:
        return price * (1 + bps / 10_000)
    return price * (1 - bps / 10_000)


@kernel
def open_position(
    raw_px: float,
    sign: float,
    cash: float,
    stake_fraction: float,
    leverage: float,
    fee_rate: float,
    slippage_bps: float,
    stop_pct: float,
    tp_pct: float,
    mmr: float,
    fee_on_stake: bool,
) -> tuple[float, float, float, float, float, float, float]:
    """An entry at ``raw_px``: (fill price, qty, fee, stake, stop, target, liquidation price).

    ``fee_on_stake`` (seed) charges the fee on the whole leveraged stake and sizes from what is
    left, as the research code did; otherwise margin plus entry fee equals the stake."""
    px = slipped(raw_px, sign > 0, slippage_bps)
    stake = cash * stake_fraction
    if fee_on_stake:
        fee = stake * leverage * fee_rate
        q = (stake * leverage - fee) / px
    else:
        q = stake / (px * (1.0 / leverage + fee_rate))
        fee = q * px * fee_rate
    if sign > 0:
        stop = px * (1 - stop_pct)
        target = px * (1 + tp_pct)
        liq = px * (1 - 1 / leverage + mmr)
    else:
        stop = px * (1 + stop_pct)
        target = px * (1 - tp_pct)
        liq = px * (1 + 1 / leverage - mmr)
    return px, q, fee, stake, stop, target, liq


@kernel
def funding_due(open_time: int, entry_time: int, rate: float) -> bool:
    """Whether an open position pays funding at this candle's open (00:00, 08:00, 16:00 UTC,
    and not on the candle it was opened at)."""
    return rate != 0.0 and open_time % FUNDING_PERIOD_MS == 0 and entry_time < open_time


@kernel
def protective_exit(
    sign: float, o: float, h: float, lo: float, c: float, stop: float, target: float, liq: float, intrabar: bool
) -> tuple[int, float, bool, bool]:
    """Which protective order a closed candle fills: (reason code or ``R_NONE``, raw price, at
    the candle's open (else at its close time), slippage applies).

    Seed (``intrabar`` False): closes only, liquidation then stop then target, filled at the close
    (liquidation at its level), no slippage, as the research code. Realistic: a candle opening
    beyond a level fills that order at its open (liquidation first: the open is the first price,
    Binance USD-M trigger rules: STOP_MARKET SELL when the latest price <= stopPrice,
    TAKE_PROFIT_MARKET SELL when >=, mirrored for BUY); otherwise intrabar from the high/low,
    liquidation only when the stop sits beyond it, then the worse case (stop) before the target."""
    long = sign > 0
    if not intrabar:
        if (c <= liq) if long else (c >= liq):
            return R_LIQ, liq, False, False
        if (c <= stop) if long else (c >= stop):
            return R_STOP, c, False, False
        if (c >= target) if long else (c <= target):
            return R_TARGET, c, False, False
        return R_NONE, 0.0, False, False
    if long:
        adverse_open = o <= stop
        adverse_extreme = lo <= stop
        favourable_open = o >= target
        favourable_extreme = h >= target
        liq_hit = lo <= liq
        opened_beyond_liq = o <= liq
        stop_beyond_liq = stop <= liq
    else:
        adverse_open = o >= stop
        adverse_extreme = h >= stop
        favourable_open = o <= target
        favourable_extreme = lo <= target
        liq_hit = h >= liq
        opened_beyond_liq = o >= liq
        stop_beyond_liq = stop >= liq
    if opened_beyond_liq:
        return R_LIQ, liq, True, False
    if adverse_open:
        return R_STOP, o, True, True
    if favourable_open:
        return R_TARGET, o, True, True
    if liq_hit and stop_beyond_liq:
        return R_LIQ, liq, False, False
    if adverse_extreme:
        return R_STOP, stop, False, True
    if favourable_extreme:
        return R_TARGET, target, False, True
    return R_NONE, 0.0, False, False


@kernel
def close_amounts(
    sign: float,
    qty: float,
    entry_px: float,
    leverage: float,
    price: float,
    slip: bool,
    liquidation: bool,
    fee_rate: float,
    slippage_bps: float,
) -> tuple[float, float, float]:
    """Closing ``qty`` at ``price``: (fill price, gross PnL, exit fee). Isolated margin: a
    liquidation loses at most the position's margin."""
    px = slipped(price, sign < 0, slippage_bps) if slip else price
    gross = sign * qty * (px - entry_px)
    if liquidation:
        gross = max(gross, -(qty * entry_px / leverage))
    fee = qty * px * fee_rate
    return px, gross, fee


@kernel
def simulate(
    open_: _F64,
    high: _F64,
    low: _F64,
    close: _F64,
    open_time: _I64,
    close_time: _I64,
    signal: NDArray[np.int8],
    stop_pct: float,
    tp_pct: float,
    stake_fraction: float,
    initial_cash: float,
    leverage: float,
    fee_rate: float,
    slippage_bps: float,
    funding_rate: float,
    mmr: float,
    fill_next_open: bool,
    intrabar: bool,
    reenter: bool,
    fee_on_stake: bool,
    record_cash: bool,
) -> tuple[_F64, NDArray[np.bool_], _F64, _F64, _F64, _F64, _F64]:
    """The broker and the session's entry rule over whole arrays, for fixed-percentage exits.

    ``signal``: +1 long, -1 short, 0 none per closed candle (the strategy's entry signal).
    Returns (equity, in_position, fills[k, 10], trades[m, 11], dropped[d, 3], totals[10], cash).

    fills: time, side (+1 buy, -1 sell), price, qty, fee, reason code, signal open time, and for
    an entry the position's stop, target and liquidation prices (NaN for an exit).
    trades: side sign, qty, entry_time, entry_price, exit_time, exit_price, pnl, fees, funding,
    reason code, stake. dropped: side sign, signal open time, open time of the candle that was
    not the signal candle's successor. totals: fees_paid, funding_paid, cash, open flag, sign,
    qty, entry price, entry time, the sign and signal open time of an entry still pending at the
    end (0, 0 if none); times are exact in float64 (epoch ms < 2**53). ``cash``: the account's
    cash at each close when ``record_cash`` (what an equity event reports), else empty."""
    n = len(close)
    equity = np.empty(n)
    in_pos = np.zeros(n, dtype=np.bool_)
    fills = np.empty((2 * n + 2, 10))
    cash_at = np.empty(n if record_cash else 0)
    trades = np.empty((n + 1, 11))
    dropped = np.empty((n + 1, 3))
    nf = 0
    nt = 0
    nd = 0
    cash = initial_cash
    fees_paid = 0.0
    funding_paid = 0.0
    pos = False
    sign = 0.0
    qty = 0.0
    entry_px = 0.0
    entry_time = 0
    entry_fee = 0.0
    stop = 0.0
    target = 0.0
    liq = 0.0
    stake_at_entry = 0.0
    pos_funding = 0.0
    sig_time = 0
    pending = False
    p_sign = 0.0
    p_sig_time = 0
    p_sig_close = 0
    for i in range(n):
        exited = False
        # ---- broker.on_candle: a pending entry fills at this open, or is dropped after a gap
        raw = 0.0
        t_fill = 0
        do_fill = False
        if pending and open_time[i] > p_sig_time:
            pending = False
            if open_time[i] > p_sig_close + 1:
                dropped[nd, 0] = p_sign
                dropped[nd, 1] = p_sig_time
                dropped[nd, 2] = open_time[i]
                nd += 1
            else:
                do_fill = True
                raw = open_[i]
                t_fill = open_time[i]
        if do_fill:
            px, q, fee, stake, stop, target, liq = open_position(
                raw, p_sign, cash, stake_fraction, leverage, fee_rate, slippage_bps, stop_pct, tp_pct, mmr, fee_on_stake
            )
            cash -= fee
            fees_paid += fee
            pos = True
            sign = p_sign
            qty = q
            entry_px = px
            entry_time = t_fill
            entry_fee = fee
            stake_at_entry = stake
            pos_funding = 0.0
            sig_time = p_sig_time
            fills[nf, 0] = t_fill
            fills[nf, 1] = sign
            fills[nf, 2] = px
            fills[nf, 3] = q
            fills[nf, 4] = fee
            fills[nf, 5] = R_ENTRY_LONG if sign > 0 else R_ENTRY_SHORT
            fills[nf, 6] = sig_time
            fills[nf, 7] = stop
            fills[nf, 8] = target
            fills[nf, 9] = liq
            nf += 1
        if pos and funding_due(open_time[i], entry_time, funding_rate):
            payment = sign * qty * open_[i] * funding_rate
            cash -= payment
            funding_paid += payment
            pos_funding += payment
        if pos:
            reason, xraw, at_open, slip = protective_exit(
                sign, open_[i], high[i], low[i], close[i], stop, target, liq, intrabar
            )
            if reason != R_NONE:
                xtime = open_time[i] if at_open else close_time[i]
                px, gross, fee = close_amounts(
                    sign, qty, entry_px, leverage, xraw, slip, reason == R_LIQ, fee_rate, slippage_bps
                )
                cash += gross - fee
                fees_paid += fee
                fills[nf, 0] = xtime
                fills[nf, 1] = -sign
                fills[nf, 2] = px
                fills[nf, 3] = qty
                fills[nf, 4] = fee
                fills[nf, 5] = reason
                fills[nf, 6] = sig_time
                fills[nf, 7] = np.nan
                fills[nf, 8] = np.nan
                fills[nf, 9] = np.nan
                nf += 1
                trades[nt, 0] = sign
                trades[nt, 1] = qty
                trades[nt, 2] = entry_time
                trades[nt, 3] = entry_px
                trades[nt, 4] = xtime
                trades[nt, 5] = px
                trades[nt, 6] = gross - entry_fee - fee - pos_funding
                trades[nt, 7] = entry_fee + fee
                trades[nt, 8] = pos_funding
                trades[nt, 9] = reason
                trades[nt, 10] = stake_at_entry
                nt += 1
                pos = False
                exited = True
        # ---- session: a flat broker takes the strategy's signal on this closed candle
        if (not pos) and (not pending) and (reenter or not exited):
            s = signal[i]
            if s != 0:
                p_sign = 1.0 if s > 0 else -1.0
                if fill_next_open:
                    pending = True
                    p_sig_time = open_time[i]
                    p_sig_close = close_time[i]
                else:
                    px, q, fee, stake, stop, target, liq = open_position(
                        close[i],
                        p_sign,
                        cash,
                        stake_fraction,
                        leverage,
                        fee_rate,
                        slippage_bps,
                        stop_pct,
                        tp_pct,
                        mmr,
                        fee_on_stake,
                    )
                    cash -= fee
                    fees_paid += fee
                    pos = True
                    sign = p_sign
                    qty = q
                    entry_px = px
                    entry_time = close_time[i]
                    entry_fee = fee
                    stake_at_entry = stake
                    pos_funding = 0.0
                    sig_time = open_time[i]
                    fills[nf, 0] = entry_time
                    fills[nf, 1] = sign
                    fills[nf, 2] = px
                    fills[nf, 3] = q
                    fills[nf, 4] = fee
                    fills[nf, 5] = R_ENTRY_LONG if sign > 0 else R_ENTRY_SHORT
                    fills[nf, 6] = sig_time
                    fills[nf, 7] = stop
                    fills[nf, 8] = target
                    fills[nf, 9] = liq
                    nf += 1
        # ---- equity marked at this close (the broker's ``equity``)
        if pos:
            equity[i] = cash + sign * qty * (close[i] - entry_px)
            in_pos[i] = True
        else:
            equity[i] = cash
        if record_cash:
            cash_at[i] = cash
    totals = np.empty(10)
    totals[0] = fees_paid
    totals[1] = funding_paid
    totals[2] = cash
    totals[3] = 1.0 if pos else 0.0
    totals[4] = sign
    totals[5] = qty
    totals[6] = entry_px
    totals[7] = entry_time
    totals[8] = p_sign if pending else 0.0
    totals[9] = p_sig_time if pending else 0
    return equity, in_pos, fills[:nf].copy(), trades[:nt].copy(), dropped[:nd].copy(), totals, cash_at
