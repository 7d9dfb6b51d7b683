"""Safety: paper by default; live needs keys, --live and a typed confirmation; secrets never
appear in logs, the journal or published events; unsafe config files are refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tradeconsole.infra.settings import ConfigError, LiveTradingRefused, Secret, check_live_allowed, load_settings

KEY = "AKIAFAKEKEY0123456789abcdefSECRETKEY"
SECRET = "s3cr3t-0123456789-abcdefghijklmnopqrstuvwxyz"


def test_secret_never_prints():
    s = Secret(SECRET)
    assert SECRET not in f"{s} {s!r} {s:>50}" and s.reveal() == SECRET
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)


def test_config_with_secrets_must_be_0600(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[binance]\napi_key = "{KEY}"\napi_secret = "{SECRET}"\n')
    cfg.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings(cfg, env={})
    cfg.chmod(0o600)
    st = load_settings(cfg, env={})
    assert st.has_keys and SECRET not in repr(st) and SECRET not in str(st.public_view())


def test_env_keys_and_live_gate():
    st = load_settings(
        None,
        env={"BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET, "TRADECONSOLE_CONFIG": "/nonexistent/config.toml"},
    )
    assert check_live_allowed(live=False, testnet=False, settings=st, symbol="ETHUSDT", confirm=None) == "paper"
    assert check_live_allowed(live=False, testnet=True, settings=st, symbol="ETHUSDT", confirm=None) == "testnet"
    with pytest.raises(LiveTradingRefused, match="typed confirmation"):
        check_live_allowed(live=True, testnet=False, settings=st, symbol="ETHUSDT", confirm=None)
    with pytest.raises(LiveTradingRefused, match="did not match"):
        check_live_allowed(live=True, testnet=False, settings=st, symbol="ETHUSDT", confirm=lambda p: "BTCUSDT")
    assert (
        check_live_allowed(live=True, testnet=False, settings=st, symbol="ETHUSDT", confirm=lambda p: "ethusdt")
        == "live"
    )
    nokeys = load_settings(None, env={"TRADECONSOLE_CONFIG": "/nonexistent/config.toml"})
    with pytest.raises(LiveTradingRefused, match="API keys missing"):
        check_live_allowed(live=True, testnet=False, settings=nokeys, symbol="ETHUSDT", confirm=lambda p: "ETHUSDT")


def _headless(args, env, tmp_path):
    return subprocess.run(
        [sys.executable, "-m", "tradeconsole.tui.cli", "run", "--headless", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )


def test_live_refused_without_confirmation_and_keys_never_leak(tmp_path, data_1h):
    env = {
        **os.environ,
        "BINANCE_API_KEY": KEY,
        "BINANCE_API_SECRET": SECRET,
        "TRADECONSOLE_CONFIG": str(tmp_path / "none.toml"),
    }
    out = _headless(["--strategy", "engulfing", "--interval", "1h", "--live"], env, tmp_path)
    assert out.returncode == 2 and "confirmation" in out.stderr
    assert KEY not in out.stderr + out.stdout and SECRET not in out.stderr + out.stdout
    no_keys = {k: v for k, v in env.items() if not k.startswith("BINANCE_")}
    out = _headless(
        ["--strategy", "engulfing", "--interval", "1h", "--live", "--confirm", "ETHUSDT"], no_keys, tmp_path
    )
    assert out.returncode == 2 and "API keys missing" in out.stderr
    # a paper replay with keys in the environment: they reach no log, journal row or event
    journal = tmp_path / "j.sqlite"
    out = _headless(
        [
            "--strategy",
            "engulfing",
            "--interval",
            "1h",
            "--replay",
            str(data_1h),
            "--speed",
            "max",
            "--journal",
            str(journal),
            "--json",
        ],
        env,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-1000:]
    blob = out.stdout + out.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            blob += path.read_bytes().decode("latin-1")
    assert KEY not in blob and SECRET not in blob
    assert '"keys_configured": true' in journal.with_name("j.sqlite").read_bytes().decode("latin-1")
