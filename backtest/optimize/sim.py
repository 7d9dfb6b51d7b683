"""Accelerated simulation: the simulated futures broker's rules compiled with numba.

This is an *accelerator*, never an authority. It re-implements, operation for operation, what
``tradeconsole.core.broker.SimulatedFuturesBroker`` + ``tradeconsole.core.session.StrategySession`` do inside
``tradeconsole.backtest.runner.run_backtest`` for a strategy whose exits are the fixed stop-loss/take-profit
of ``StrategyParams`` (both fill models: seed closes-only exits, realistic next-open entries with
dropped entries after gaps, intrabar exits, gaps through levels, liquidation, funding, slippage).
The same IEEE operations in the same order give bit-identical numbers, and that is *checked*,
not assumed: ``tradeconsole.backtest.optimize.evaluate`` re-runs results through ``run_backtest`` and the
tests compare randomised combinations exhaustively. Anything the kernel does not model (a
strategy with its own exit rules) must go through the reference path instead.

Signals come from the strategy's own ``entry_signal`` (evaluated once per distinct set of entry
parameters, see ``evaluate``), so the kernel never decides a trade by rules of its own.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

F64 = NDArray[np.float64]

__all__ = ["simulate", "FUNDING_PERIOD_MS", "R_ENTRY_LONG", "R_ENTRY_SHORT", "R_STOP", "R_TARGET", "R_LIQ"]

FUNDING_PERIOD_MS = 8 * 3_600_000  # tradeconsole.core.broker.FUNDING_PERIOD_MS
R_ENTRY_LONG, R_ENTRY_SHORT, R_STOP, R_TARGET, R_LIQ = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def _slipped(price: float, buy: bool, bps: float) -> float:
    if bps == 0.0:
        return price
    if buy:
        return price * (1 + bps / 10_000)
    return price * (1 - bps / 10_000)


@njit(cache=True, nogil=True)
def _open_position(
    raw_px: float,
    side: float,
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
    """The entry's fill price, quantity, fee, stake and its stop, target and liquidation prices:
    ``tradeconsole.core.broker``'s entry arithmetic (both fill models' fee conventions), written once for both
    of the kernel's fill paths (next open, signal close)."""
    px = _slipped(raw_px, side > 0, slippage_bps)
    stake = cash * stake_fraction
    if fee_on_stake:
        fee = stake * leverage * fee_rate
        q = (stake * leverage - fee) / px
    else:
        q = stake / (px * (1.0 / leverage + fee_rate))
        fee = q * px * fee_rate
    if side > 0:
        stop = px * (1 - stop_pct)
        target = px * (1 + tp_pct)
        liq = px * (1 - 1 / leverage + mmr)
    else:
        stop = px * (1 + stop_pct)
        target = px * (1 - tp_pct)
        liq = px * (1 + 1 / leverage - mmr)
    return px, q, fee, stake, stop, target, liq


@njit(cache=True, nogil=True)
def _record_entry(fills: F64, nf: int, t: float, buy: bool, px: float, q: float, fee: float, sig_time: float) -> int:
    """Write the entry fill row ``nf`` (columns as ``simulate`` documents); returns the next row."""
    fills[nf, 0] = t
    fills[nf, 1] = 1.0 if buy else -1.0
    fills[nf, 2] = px
    fills[nf, 3] = q
    fills[nf, 4] = fee
    fills[nf, 5] = R_ENTRY_LONG if buy else R_ENTRY_SHORT
    fills[nf, 6] = sig_time
    return nf + 1


@njit(cache=True, nogil=True)
def simulate(
    open_: F64,
    high: F64,
    low: F64,
    close: F64,
    open_time: NDArray[np.int64],
    close_time: NDArray[np.int64],
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
) -> tuple[F64, NDArray[np.bool_], F64, F64, F64]:
    """Run one combination. Returns (equity, in_position, fills[k, 7], trades[m, 11], totals[4]).

    fills columns: time, side (+1 buy, -1 sell), price, qty, fee, reason code, signal open time.
    trades columns: side sign, qty, entry_time, entry_price, exit_time, exit_price, pnl, fees,
    funding, reason code, stake. totals: fees_paid, funding_paid, dropped entries, open flag."""
    n = len(close)
    equity = np.empty(n)
    in_pos = np.zeros(n, dtype=np.bool_)
    fills = np.empty((2 * n + 2, 7))
    trades = np.empty((n + 1, 11))
    nf = 0
    nt = 0
    cash = initial_cash
    fees_paid = 0.0
    funding_paid = 0.0
    dropped = 0
    # position state
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
    # pending entry (realistic)
    pending = False
    p_sign = 0.0
    p_sig_time = 0
    p_sig_close = 0
    for i in range(n):
        exited = False
        # ---- broker.on_candle: on_candle_open (pending entry fills at this open, or is dropped)
        do_fill = False
        fill_px_raw = 0.0
        fill_t = 0
        if pending and open_time[i] > p_sig_time:
            if open_time[i] > p_sig_close + 1:
                pending = False
                dropped += 1
            else:
                do_fill = True
                fill_px_raw = open_[i]
                fill_t = open_time[i]
        if do_fill:
            pending = False
            buy = p_sign > 0
            px, q, fee, stake, stop, target, liq = _open_position(
                fill_px_raw,
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
            entry_time = fill_t
            entry_fee = fee
            stake_at_entry = stake
            pos_funding = 0.0
            sig_time = p_sig_time
            nf = _record_entry(fills, nf, fill_t, buy, px, q, fee, sig_time)
        # ---- funding at 00/08/16 UTC opens
        if pos and funding_rate != 0.0 and open_time[i] % FUNDING_PERIOD_MS == 0 and entry_time < open_time[i]:
            payment = sign * qty * open_[i] * funding_rate
            cash -= payment
            funding_paid += payment
            pos_funding += payment
        # ---- protective exits
        if pos:
            reason = -1
            xprice = 0.0
            xtime = 0
            slip = True
            long = sign > 0
            c_o = open_[i]
            c_h = high[i]
            c_l = low[i]
            c_c = close[i]
            if not intrabar:
                if (c_c <= liq) if long else (c_c >= liq):
                    reason, xprice, xtime, slip = R_LIQ, liq, close_time[i], False
                elif (c_c <= stop) if long else (c_c >= stop):
                    reason, xprice, xtime, slip = R_STOP, c_c, close_time[i], False
                elif (c_c >= target) if long else (c_c <= target):
                    reason, xprice, xtime, slip = R_TARGET, c_c, close_time[i], False
            else:
                if long:
                    adverse_open = c_o <= stop
                    adverse_extreme = c_l <= stop
                    favourable_open = c_o >= target
                    favourable_extreme = c_h >= target
                    liq_hit = c_l <= liq
                    opened_beyond_liq = c_o <= liq
                    stop_beyond_liq = stop <= liq
                else:
                    adverse_open = c_o >= stop
                    adverse_extreme = c_h >= stop
                    favourable_open = c_o <= target
                    favourable_extreme = c_l <= target
                    liq_hit = c_h >= liq
                    opened_beyond_liq = c_o >= liq
                    stop_beyond_liq = stop >= liq
                if opened_beyond_liq:
                    reason, xprice, xtime, slip = R_LIQ, liq, open_time[i], False
                elif adverse_open:
                    reason, xprice, xtime, slip = R_STOP, c_o, open_time[i], True
                elif favourable_open:
                    reason, xprice, xtime, slip = R_TARGET, c_o, open_time[i], True
                elif liq_hit and stop_beyond_liq:
                    reason, xprice, xtime, slip = R_LIQ, liq, close_time[i], False
                elif adverse_extreme:
                    reason, xprice, xtime, slip = R_STOP, stop, close_time[i], True
                elif favourable_extreme:
                    reason, xprice, xtime, slip = R_TARGET, target, close_time[i], True
            if reason >= 0:
                exit_buy = sign < 0
                px = _slipped(xprice, exit_buy, slippage_bps) if slip else xprice
                gross = sign * qty * (px - entry_px)
                if reason == R_LIQ:
                    margin = qty * entry_px / leverage
                    gross = max(gross, -margin)
                fee = qty * px * fee_rate
                cash += gross - fee
                fees_paid += fee
                fills[nf, 0] = xtime
                fills[nf, 1] = 1.0 if exit_buy else -1.0
                fills[nf, 2] = px
                fills[nf, 3] = qty
                fills[nf, 4] = fee
                fills[nf, 5] = reason
                fills[nf, 6] = sig_time
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
        # ---- session: a flat broker takes the strategy's signal
        if (not pos) and (not pending) and (reenter or not exited):
            s = signal[i]
            if s != 0:
                if fill_next_open:
                    pending = True
                    p_sign = 1.0 if s > 0 else -1.0
                    p_sig_time = open_time[i]
                    p_sig_close = close_time[i]
                else:
                    p_sign = 1.0 if s > 0 else -1.0
                    buy = p_sign > 0
                    px, q, fee, stake, stop, target, liq = _open_position(
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
                    nf = _record_entry(fills, nf, close_time[i], buy, px, q, fee, sig_time)
        # ---- equity marked at this close
        if pos:
            equity[i] = cash + sign * qty * (close[i] - entry_px)
            in_pos[i] = True
        else:
            equity[i] = cash + 0.0 * (close[i] - 0.0)
    totals = np.empty(8)
    totals[0] = fees_paid
    totals[1] = funding_paid
    totals[2] = dropped
    totals[3] = 1.0 if pos else 0.0
    totals[4] = sign
    totals[5] = qty
    totals[6] = entry_px
    totals[7] = entry_time
    return equity, in_pos, fills[:nf].copy(), trades[:nt].copy(), totals
