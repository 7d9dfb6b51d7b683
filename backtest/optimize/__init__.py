"""``tradeconsole optimize``: parameter search over the one backtest path.

Modules: ``space`` (what to search: ``--param`` specs, grid/random/Optuna), ``evaluate`` (the
shared per-window workspace, the compiled fast path and the one path it is checked against),
``sim`` (the numba kernel), ``objective`` (objectives and constraints), ``walkforward``
(windows, in/out-of-sample, PBO and the deflated Sharpe ratio), ``store`` (resumable results
files), ``run`` (local worker processes), ``cli`` (the command).
"""
