"""Settings from the config file and the environment, and the gate in front of live trading.

Config file (TOML): ``--config PATH``, else ``$TRADECONSOLE_CONFIG``, else ``config.toml`` in
the platform's user config directory. Top level (before any section)::

    symbols = ["ETHUSDT", "BTCUSDT"]   symbols to trade when no --symbol is given; each runs
                                       every strategy as its own session

Sections::

    [binance]        api_key, api_secret, spot_rest, futures_rest, spot_ws, futures_ws
    [kafka]          bootstrap, topic_prefix, security_protocol, ssl_cafile, ssl_password,
                     sasl_mechanism, sasl_plain_username, sasl_plain_password
    [elasticsearch]  url (may embed user:password), cloud_id, api_key, username, password
    [risk]           max_notional, max_daily_loss, max_orders_per_minute, max_positions
                     (with several sessions in paper mode: for the shared account as a whole)
    [paper]          cash

Secrets (API keys and secrets, passwords) may come from the environment
(``BINANCE_API_KEY``/``BINANCE_API_SECRET``, or the same names prefixed ``TRADECONSOLE_``;
``TRADECONSOLE_KAFKA_SASL_PLAIN_PASSWORD``, ``TRADECONSOLE_KAFKA_SSL_PASSWORD``,
``TRADECONSOLE_ELASTICSEARCH_PASSWORD``, ``TRADECONSOLE_ELASTICSEARCH_API_KEY``) or from the config
file, which must then be readable by its owner only (mode 0600): a config file with secrets
(any ``*password``/``*secret``/``*api_key``/``*token`` setting, or a URL with a password) and
looser permissions is refused. A user:password in ``[elasticsearch] url`` is split off into
``username``/``password`` so the URL itself carries no credential. Secrets are wrapped in ``Secret``, whose ``str`` and
``repr`` are ``***``, so a log line, an exception or a UI widget cannot show one by accident.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradeconsole.core.risk import RiskLimits

__all__ = [
    "ConfigError",
    "LiveTradingRefused",
    "Secret",
    "Settings",
    "check_live_allowed",
    "is_secret_key",
    "load_settings",
    "redact_url",
    "split_url_credentials",
]

_SECRET_KEYS = {"api_key", "api_secret", "sasl_plain_password", "ssl_password", "password", "secret", "token"}
_SECRET_SUFFIXES = ("_password", "_secret", "_token", "_api_key")

#: environment variables holding secrets of a config section (never from a world-readable file)
_SECRET_ENV = {
    ("kafka", "sasl_plain_password"): "TRADECONSOLE_KAFKA_SASL_PLAIN_PASSWORD",
    ("kafka", "ssl_password"): "TRADECONSOLE_KAFKA_SSL_PASSWORD",
    ("elasticsearch", "password"): "TRADECONSOLE_ELASTICSEARCH_PASSWORD",
    ("elasticsearch", "api_key"): "TRADECONSOLE_ELASTICSEARCH_API_KEY",
}

#: known settings that must be strings (a number or table there is a config mistake)
_STRING_KEYS = {
    "binance": ("api_key", "api_secret", "spot_rest", "futures_rest", "spot_ws", "futures_ws"),
    "kafka": (
        "bootstrap",
        "topic_prefix",
        "security_protocol",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
    ),
    "elasticsearch": ("url", "cloud_id", "api_key", "username", "password", "index_prefix", "ca_certs"),
}
_SECTIONS = ("binance", "kafka", "elasticsearch", "risk", "paper", "kibana", "forwarder")


def is_secret_key(key: str) -> bool:
    """Whether a setting's name says it holds a secret (passwords, API keys and secrets, tokens)."""
    k = key.lower()
    return k in _SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def split_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``https://user:pw@host:9200/x`` -> (``https://host:9200/x``, ``user``, ``pw``); URLs
    without user info come back unchanged with (None, None)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None, None
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, pw = userinfo.partition(":")
    return (urlunsplit(parts._replace(netloc=hostport)), unquote(user) or None, unquote(pw) if sep else None)


def redact_url(url: str | None) -> str | None:
    """A URL safe to store or log: any embedded password becomes ``***``."""
    if not url:
        return url
    clean, user, pw = split_url_credentials(url)
    if user is None and pw is None:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(clean)
    return urlunsplit(parts._replace(netloc=f"{user or ''}:***@{parts.netloc}"))


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
    #: the config's ``symbols`` (upper case, checked); empty when not set
    symbols: tuple[str, ...] = ()
    api_key: Secret | None = None
    api_secret: Secret | None = None

    @property
    def has_keys(self) -> bool:
        return bool(self.api_key) and bool(self.api_secret)

    def public_view(self) -> dict[str, Any]:
        """Everything except secrets (for the journal's run record and diagnostics): secret
        settings become ``***`` and passwords embedded in URLs are redacted."""

        def clean(d: Mapping[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in d.items():
                if is_secret_key(k) or isinstance(v, Secret):
                    out[k] = "***"
                elif isinstance(v, str):
                    out[k] = redact_url(v) if "@" in v else v
                elif isinstance(v, Mapping):
                    out[k] = clean(v)
                else:
                    out[k] = v
            return out

        return {
            "config_path": str(self.config_path) if self.config_path else None,
            "binance": clean(self.binance),
            "kafka": clean(self.kafka),
            "elasticsearch": clean(self.elasticsearch),
            "risk": {
                "max_notional": self.risk.max_notional,
                "max_daily_loss": self.risk.max_daily_loss,
                "max_orders_per_minute": self.risk.max_orders_per_minute,
                "max_positions": self.risk.max_positions,
            },
            "symbols": list(self.symbols),
            "keys_configured": self.has_keys,
        }


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("TRADECONSOLE_CONFIG"):
        return Path(env["TRADECONSOLE_CONFIG"]).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("tradeconsole", appauthor=False)) / "config.toml"


def _has_url_credentials(v: Any) -> bool:
    return isinstance(v, str) and "@" in v and "://" in v and split_url_credentials(v)[2] is not None


def _contains_secret(tree: Mapping[str, Any]) -> bool:
    """Whether any table holds a secret: a secret-named key with a value, or a URL with a password."""
    for k, v in tree.items():
        if isinstance(v, Mapping) and _contains_secret(v):
            return True
        if is_secret_key(k) and v:
            return True
        if _has_url_credentials(v) or (isinstance(v, list) and any(_has_url_credentials(x) for x in v)):
            return True
    return False


def _check_types(p: Path, data: Mapping[str, Any]) -> None:
    """Refuse wrong types with one clear line naming the file and the setting."""
    for name in _SECTIONS:
        if name in data and not isinstance(data[name], Mapping):
            raise ConfigError(
                f"config {p}: [{name}] must be a table, not {_toml_type(data[name])} (write it as a [{name}] section)"
            )
    for section, keys in _STRING_KEYS.items():
        for k in keys:
            v = data.get(section, {}).get(k)
            if v is not None and not isinstance(v, str):
                shown = "another type" if is_secret_key(k) else _toml_type(v)  # never echo a secret
                raise ConfigError(f"config {p}: [{section}] {k} must be a string, not {shown}")


def _toml_type(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return f"a number ({v!r})" if len(repr(v)) <= 40 else "a number"
    if isinstance(v, str):
        return f"a string ({v[:40]!r}{'…' if len(v) > 40 else ''})"
    if isinstance(v, Mapping):
        return "a table"
    if isinstance(v, list):
        return "an array"
    return type(v).__name__


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Read the config file (if any) and the environment. Raises ConfigError (a user mistake,
    one line naming the file) on unreadable, malformed, mistyped or unsafe files: a file holding
    any secret must be readable by its owner only (0600)."""
    explicit = path is not None
    p = Path(path).expanduser() if path is not None else default_config_path(env)
    data: dict[str, Any] = {}
    try:
        exists = p.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise ConfigError(f"config {_shown(p)}: unusable path ({exc.strerror or exc})") from None
    if exists:
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"config {p}: not a text (UTF-8 TOML) file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {p}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config {p}: cannot read: {exc.strerror or exc}") from None
        if _contains_secret(data):
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"config {p} holds secrets but is readable by others (mode {mode:o}); run: chmod 600 {p}"
                )
        _check_types(p, data)
    elif explicit:
        raise ConfigError(f"config {p}: no such config file")
    binance = dict(data.get("binance", {}))
    kafka = dict(data.get("kafka", {}))
    es = dict(data.get("elasticsearch", {}))
    risk_cfg = data.get("risk", {})
    key = env.get("BINANCE_API_KEY") or env.get("TRADECONSOLE_BINANCE_API_KEY") or binance.pop("api_key", "") or ""
    secret = (
        env.get("BINANCE_API_SECRET")
        or env.get("TRADECONSOLE_BINANCE_API_SECRET")
        or binance.pop("api_secret", "")
        or ""
    )
    binance.pop("api_key", None)
    binance.pop("api_secret", None)
    if isinstance(es.get("url"), str):
        clean, user, pw = split_url_credentials(es["url"])
        if pw is not None or user is not None:
            if es.get("username") not in (None, user) or (pw is not None and es.get("password") not in (None, pw)):
                raise ConfigError(
                    f"config {p}: [elasticsearch] url carries credentials that differ from "
                    "username/password; keep one of them"
                )
            es["url"] = clean
            if user is not None:
                es["username"] = user
            if pw is not None:
                es["password"] = pw
    for section, d in (("kafka", kafka), ("elasticsearch", es)):
        for k in list(d):
            if is_secret_key(k):
                d[k] = Secret(str(d[k]))
        for (sec, k), var in _SECRET_ENV.items():
            if sec == section and env.get(var):
                d[k] = Secret(env[var])
    try:
        risk = RiskLimits(
            max_notional=_opt_number(risk_cfg.get("max_notional"), "max_notional"),
            max_daily_loss=_opt_number(risk_cfg.get("max_daily_loss"), "max_daily_loss"),
            max_orders_per_minute=_opt_int(risk_cfg.get("max_orders_per_minute", 10), "max_orders_per_minute"),
            max_positions=_opt_int(risk_cfg.get("max_positions"), "max_positions"),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config {p}: [risk] {exc}") from None
    try:
        cash = _opt_number(data.get("paper", {}).get("cash"), "cash")
        if cash is not None and not (math.isfinite(cash) and 0 < cash <= 1e12):
            raise ValueError(f"cash={cash:g} is out of range: allowed 0 < cash <= 1e12 (USDT)")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config {p}: [paper] {exc}") from None
    symbols = _symbols(p, data.get("symbols"))
    return Settings(
        config_path=p if exists else None,
        binance=binance,
        kafka=kafka,
        elasticsearch=es,
        risk=risk,
        paper_cash=cash,
        symbols=symbols,
        api_key=Secret(key) if key else None,
        api_secret=Secret(secret) if secret else None,
    )


def _symbols(p: Path, v: Any) -> tuple[str, ...]:
    """The top-level ``symbols`` list: Binance symbols (letters and digits), each once."""
    if v is None:
        return ()
    if not isinstance(v, list) or not v:
        raise ConfigError(
            f"config {p}: symbols must be a non-empty array of strings, e.g. "
            f'symbols = ["ETHUSDT", "BTCUSDT"], not {_toml_type(v)}'
        )
    out: list[str] = []
    for x in v:
        if not isinstance(x, str) or not re.fullmatch(r"[A-Za-z0-9]{2,30}", x):
            raise ConfigError(f"config {p}: symbols: not a symbol: {_toml_type(x)} (letters and digits, e.g. ETHUSDT)")
        if x.upper() in out:
            raise ConfigError(f"config {p}: symbols: {x.upper()} is listed twice")
        out.append(x.upper())
    return tuple(out)


def _shown(p: Path, limit: int = 200) -> str:
    """A path for a message, shortened like ``tradeconsole.tui.cli.clip`` (a path is user input too)."""
    s = str(p)
    return s if len(s) <= limit else f"{s[:limit]}…({len(s)} chars)"


def _opt_number(v: Any, name: str) -> float | None:
    """A TOML number (not a string, not a boolean) or None; finiteness is the caller's check."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"{name} must be a number, not {_toml_type(v)}")
    return float(v)


def _opt_int(v: Any, name: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be a whole number, not {_toml_type(v)}")
    return v


def check_live_allowed(
    *, live: bool, testnet: bool, settings: Settings, symbol: str, confirm: Callable[[str], str] | None
) -> str:
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
            "api_key/api_secret under [binance] in a config file with mode 0600"
        )
    if testnet:
        return "testnet"
    if confirm is None:
        raise LiveTradingRefused(
            "live trading needs a typed confirmation; none possible here (headless: pass --confirm SYMBOL)"
        )
    typed = confirm(f"LIVE TRADING with real money on Binance USD-M futures. Type the symbol ({symbol}) to confirm: ")
    if typed.strip().upper() != symbol.upper():
        raise LiveTradingRefused("confirmation did not match the symbol: live trading not started")
    return "live"
