"""Deciding what the console runs on: live Binance data or a replay of history.

Kept apart from the app so it can be tested without a terminal: a quick TCP probe of the
configured Binance host (so a machine without network is told so in seconds, and offered a
replay, instead of watching a websocket retry forever), the history-cache directories that could
be replayed instead, and how a replay path follows a symbol or interval switch.
"""

from __future__ import annotations

import re
import socket
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from tradeconsole.tui.runtime import RuntimeOptions

__all__ = [
    "data_symbol",
    "data_symbol_problem",
    "load_theme",
    "save_theme",
    "probe_binance",
    "replay_candidates",
    "retarget_replay",
    "symbol_problem",
    "with_market",
]

from tradeconsole.backtest.data import SYMBOL_NAME as _SYMBOL
from tradeconsole.backtest.data import data_symbol, data_symbol_problem


def probe_binance(opts: RuntimeOptions, timeout: float = 3.0) -> str | None:
    """None when a TCP connection to the Binance REST host for ``opts.market`` succeeds, else a
    one-line reason. Endpoint overrides (config file, environment) are honoured."""
    from tradeconsole.infra.binance.http.endpoints import resolve_endpoints

    try:
        from tradeconsole.infra.settings import load_settings

        binance = load_settings(opts.config).binance
    except Exception:  # noqa: BLE001 - a bad config is reported when the runtime is built
        binance = {}
    try:
        endpoints = resolve_endpoints(binance, testnet=opts.testnet)
    except ValueError as exc:
        return str(exc)
    url = endpoints.futures_rest if opts.market == "futures" else endpoints.spot_rest
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach {host}:{port} ({exc.strerror or exc.__class__.__name__})"
    return None


def replay_candidates(symbol: str, interval: str, market: str = "futures") -> list[str]:
    """History-cache directories with data files for ``symbol``/``interval`` (the requested market
    first, then the other)."""
    from tradeconsole.core.paths import history_cache_dir

    out: list[str] = []
    for m in dict.fromkeys((market, "spot", "futures")):
        d = history_cache_dir(symbol, interval, m)
        if d.is_dir() and any(p.suffix in (".csv", ".parquet") for p in d.iterdir()):
            out.append(str(d))
    return out


def retarget_replay(path: str, old_symbol: str, new_symbol: str, old_interval: str, new_interval: str) -> str | None:
    """The replay path for another symbol/interval, following the layout both the download cache
    and Binance public data use (``.../<SYMBOL>/<interval>/<SYMBOL>-<interval>-YYYY-MM.csv``).
    None when no such path exists (the caller then asks for one)."""
    p = Path(path)
    parts = list(p.parts)
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        if part == old_interval:
            parts[i] = new_interval
        elif part.upper() == old_symbol.upper():
            parts[i] = new_symbol.upper()
        elif i == len(parts) - 1 and p.suffix:
            parts[i] = part.replace(f"{old_symbol.upper()}-", f"{new_symbol.upper()}-").replace(
                f"-{old_interval}-", f"-{new_interval}-"
            )
    candidate = Path(*parts)
    if candidate == p and (old_symbol.upper() != new_symbol.upper() or old_interval != new_interval):
        return None
    return str(candidate) if candidate.exists() else None


def symbol_problem(text: str) -> str | None:
    """Validation for the symbol dialog."""
    if not _SYMBOL.match(text.upper()):
        return "a Binance symbol is 5-20 letters/digits, e.g. ETHUSDT"
    return None


def with_market(
    opts: RuntimeOptions,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    replay: str | None = None,
    strategies: list[tuple[str, str]] | None = None,
) -> RuntimeOptions:
    """A copy of ``opts`` for a new runtime: strategies keep their names, all move to ``interval``."""
    strats = strategies if strategies is not None else list(opts.strategies)
    if interval is not None:
        strats = [(name, interval) for name, _ in strats]
    return replace(
        opts,
        symbol=(symbol or opts.symbol).upper(),
        strategies=strats,
        replay=replay if replay is not None else opts.replay,
    )


def _config_file(config: str | None) -> Path:
    from tradeconsole.infra.settings import default_config_path

    return Path(config).expanduser() if config else default_config_path()


def load_theme(config: str | None) -> str | None:
    """The theme saved in the config file's ``[ui]`` table (None when unset or unreadable)."""
    import tomllib

    p = _config_file(config)
    try:
        theme = tomllib.loads(p.read_text()).get("ui", {}).get("theme")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return None
    return theme if isinstance(theme, str) and theme else None


_THEME_LINE = re.compile(r"^\s*theme\s*=.*$")
_TABLE = re.compile(r"^\s*\[")


def save_theme(config: str | None, theme: str) -> Path:
    """Write ``theme`` into the config file's ``[ui]`` table, changing nothing else in it.

    A line-level edit rather than a TOML rewrite: the file is the user's (comments, order, and
    possibly API keys), so only the one line is replaced or added; the file keeps its mode (a
    new one is created 0600, as a file that may later hold keys must be) and is replaced
    atomically."""
    import os
    import tempfile

    if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", theme):
        raise ValueError(f"not a theme name: {theme!r}")
    p = _config_file(config)
    lines = p.read_text().splitlines() if p.exists() else []
    out: list[str] = []
    in_ui = done = False
    for line in lines:
        if _TABLE.match(line):
            if in_ui and not done:
                out.append(f'theme = "{theme}"')
                done = True
            in_ui = line.strip() == "[ui]"
        elif in_ui and not done and _THEME_LINE.match(line):
            out.append(f'theme = "{theme}"')
            done = True
            continue
        out.append(line)
    if not done:
        if in_ui:
            out.append(f'theme = "{theme}"')
        else:
            out += ([""] if out and out[-1].strip() else []) + ["[ui]", f'theme = "{theme}"']
    mode = (p.stat().st_mode & 0o777) if p.exists() else 0o600
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".config-", suffix=".toml")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(out) + "\n")
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
