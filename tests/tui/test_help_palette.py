"""Help, key bar and palette list every action once with readable names; the chosen theme is
kept in the config file (issue 11, item 9)."""

from __future__ import annotations

import os
import stat

import pytest
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.screens.dashboard import DASHBOARD_BINDINGS
from tradeconsole.tui.screens.help import HelpScreen
from tradeconsole.tui.startup import load_theme, save_theme

from tests.tui.test_app import quit_cleanly, start


def test_save_theme_edits_one_line_and_keeps_the_file_private(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '# my settings\n[binance]\napi_key = "k"\n\n[ui]\ntheme = "old"\nother = 1\n\n[risk]\nmax_notional = 5\n'
    )
    os.chmod(cfg, 0o600)
    save_theme(str(cfg), "nord")
    text = cfg.read_text()
    assert 'theme = "nord"' in text and "old" not in text and "# my settings" in text and "other = 1" in text
    assert 'api_key = "k"' in text and "max_notional = 5" in text
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert load_theme(str(cfg)) == "nord"
    fresh = tmp_path / "new" / "config.toml"
    save_theme(str(fresh), "gruvbox")
    assert load_theme(str(fresh)) == "gruvbox" and stat.S_IMODE(fresh.stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        save_theme(str(cfg), 'x"\n[binance]')  # never writes anything but a theme name


def test_every_dashboard_action_has_one_readable_binding():
    actions = [b.action for b in DASHBOARD_BINDINGS]
    assert len(actions) == len(set(actions)), "an action bound twice"
    assert all(b.description and "_" not in b.description for b in DASHBOARD_BINDINGS)


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_palette_lists_each_action_once_and_the_theme_persists(replay_opts, tmp_path, monkeypatch):
    cfg = tmp_path / "config.toml"
    monkeypatch.setenv("TRADECONSOLE_CONFIG", str(cfg))
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert len(titles) == len(set(titles)), titles
        for t in ("Quit", "Kill switch", "Flatten all positions", "Replay faster", "Help: every key", "Theme"):
            assert titles.count(t) == 1, t
        assert "Keys" not in titles
        app.theme = "nord"  # what the palette's Theme command does
        await pilot.pause(0.1)
        assert load_theme(None) == "nord"
        await quit_cleanly(pilot, app)
    again = TradeConsoleApp(replay_opts())
    async with again.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert again.theme == "nord"
        await pilot.press("question_mark")
        assert isinstance(again.screen, HelpScreen)
        await pilot.press("escape")
        await quit_cleanly(pilot, again)
