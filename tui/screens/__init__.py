"""Screens of the console: dashboard, backtest, help and the modal dialogs."""
