"""Screens of the console: dashboard, backtest, help and the modal dialogs.

Screens import widgets and never the app: what a screen needs from the app (the collector, the
header state, the chart builder, the intervals offered) is handed to its constructor.
"""

#: intervals the console offers (interval dialog, backtest form): the Binance ones worth trading
INTERVALS = ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "1d"]
