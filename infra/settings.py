"""Settings from the config file and the environment, and the gate in front of live trading.

Config file (TOML): ``--config PATH``, else ``$TRADECONSOLE_CONFIG``, else ``config.toml`` in
the platform's user config directory. Sections::

    [binance]        api_key, api_secret, spot_rest, futures_rest, spot_ws, futures_ws
    [kafka]          bootstrap, topic_prefix, security_protocol, ssl_cafile, sasl_mechanism,
                     sasl_plain_username, sasl_plain_password
    [elasticsearch]  url, cloud_id, api_key
    [risk]           max_notional, max_daily_loss, max_orders_per_minute
    [paper]          cash

Secrets (API keys and secrets, passwords) may come from the environment
(``BINANCE_API_KEY``/``BINANCE_API_SECRET``, or the same names prefixed ``TRADECONSOLE_``) or from
the config file, which must then be readable by its owner only (mode 0600): a config file with
secrets and looser permissions is refused. Secrets are wrapped in ``Secret``, whose ``str`` and
``repr`` are ``***``, so a log line, an exception or a UI widget cannot show one by accident.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.risk import RiskLimits

__all__ = ["ConfigError", "LiveTradingRefused", "Secret", "Settings", "check_live_allowed", "load_settings"]

_SECRET_KEYS = {"api_key", "api_secret", "sasl_plain_password", "password", "secret"}


class ConfigError(ValueError):
    """The config file is unreadable, malformed or unsafe."""


class LiveTradingRefused(RuntimeError):
    """Live trading was requested without everything it requires."""


class Secret:
    """A secret string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __reduce__(self):  # pickling a secret is a leak waiting to happen
        raise TypeError("secrets cannot be pickled")


@dataclass(slots=True)
class Settings:
    config_path: Path | None = None
    binance: dict[str, Any] = field(default_factory=dict)
    kafka: dict[str, Any] = field(default_factory=dict)
    elasticsearch: dict[str, Any] = field(default_factory=dict)
    risk: RiskLimits = RiskLimits()
    paper_cash: float | None = None
    api_key: Secret | None = None
    api_secret: Secret | None = None

    @property
    def has_keys(self) -> bool:
        return bool(self.api_key) and bool(self.api_secret)

    def public_view(self) -> dict[str, Any]:
        """Everything except secrets (for the journal's run record and diagnostics)."""
        def clean(d: Mapping[str, Any]) -> dict[str, Any]:
            return {k: ("***" if k in _SECRET_KEYS or isinstance(v, Secret) else v) for k, v in d.items()}

        return {
            "config_path": str(self.config_path) if self.config_path else None,
            "binance": clean(self.binance),
            "kafka": clean(self.kafka),
            "elasticsearch": clean(self.elasticsearch),
            "risk": {"max_notional": self.risk.max_notional, "max_daily_loss": self.risk.max_daily_loss,
                     "max_orders_per_minute": self.risk.max_orders_per_minute},
            "keys_configured": self.has_keys,
        }


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("TRADECONSOLE_CONFIG"):
        return Path(env["TRADECONSOLE_CONFIG"]).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("tradeconsole", appauthor=False)) / "config.toml"


def _contains_secret(tree: Mapping[str, Any]) -> bool:
    for k, v in tree.items():
        if isinstance(v, Mapping) and _contains_secret(v):
            return True
        if k in _SECRET_KEYS and v:
            return True
    return False


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Read the config file (if any) and the environment. Raises ConfigError on unsafe files."""
    explicit = path is not None
    p = Path(path).expanduser() if path is not None else default_config_path(env)
    data: dict[str, Any] = {}
    if p.exists():
        try:
            data = tomllib.loads(p.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read config: {exc}") from None
        if _contains_secret(data):
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o077:
                raise ConfigError(f"{p} holds secrets but is readable by others (mode {mode:o}); "
                                  f"run: chmod 600 {p}")
    elif explicit:
        raise ConfigError(f"{p}: no such config file")
    binance = dict(data.get("binance", {}))
    kafka = dict(data.get("kafka", {}))
    es = dict(data.get("elasticsearch", {}))
    risk_cfg = data.get("risk", {})
    key = env.get("BINANCE_API_KEY") or env.get("TRADECONSOLE_BINANCE_API_KEY") or binance.pop("api_key", "") or ""
    secret = env.get("BINANCE_API_SECRET") or env.get("TRADECONSOLE_BINANCE_API_SECRET") or \
        binance.pop("api_secret", "") or ""
    binance.pop("api_key", None)
    binance.pop("api_secret", None)
    for d in (kafka, es):
        for k in list(d):
            if k in _SECRET_KEYS:
                d[k] = Secret(str(d[k]))
    try:
        risk = RiskLimits(
            max_notional=_opt_float(risk_cfg.get("max_notional")),
            max_daily_loss=_opt_float(risk_cfg.get("max_daily_loss")),
            max_orders_per_minute=int(risk_cfg.get("max_orders_per_minute", 10)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{p}: [risk] {exc}") from None
    cash = _opt_float(data.get("paper", {}).get("cash"))
    return Settings(config_path=p if p.exists() else None, binance=binance, kafka=kafka, elasticsearch=es,
                    risk=risk, paper_cash=cash, api_key=Secret(key) if key else None,
                    api_secret=Secret(secret) if secret else None)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def check_live_allowed(*, live: bool, testnet: bool, settings: Settings, symbol: str,
                       confirm: Callable[[str], str] | None) -> str:
    """Return the trading mode (``paper``, ``testnet`` or ``live``) or raise LiveTradingRefused.

    Live trading needs all of: API keys, the explicit ``--live`` flag, and the symbol typed back
    at a confirmation prompt (``confirm`` shows the prompt and returns what was typed; None means
    no way to ask, which refuses). Testnet needs keys and ``--testnet``.
    """
    if live and testnet:
        raise LiveTradingRefused("choose either --live or --testnet, not both")
    if not live and not testnet:
        return "paper"
    if not settings.has_keys:
        raise LiveTradingRefused(
            "API keys missing: set BINANCE_API_KEY and BINANCE_API_SECRET in the environment, or "
            "api_key/api_secret under [binance] in a config file with mode 0600")
    if testnet:
        return "testnet"
    if confirm is None:
        raise LiveTradingRefused("live trading needs a typed confirmation; none possible here "
                                 "(headless: pass --confirm SYMBOL)")
    typed = confirm(f"LIVE TRADING with real money on Binance USD-M futures. Type the symbol ({symbol}) to confirm: ")
    if typed.strip().upper() != symbol.upper():
        raise LiveTradingRefused("confirmation did not match the symbol: live trading not started")
    return "live"
