"""Backtest outputs: trades CSV, equity curve CSV, metrics JSON and a self-contained HTML report.

The HTML report needs nothing but a browser: the plots are inline SVG drawn here (equity with drawdown beneath it,
and the trades over the price), downsampled to at most ~2,000 points per line so a million-bar run stays small.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..data.bars import BarSeries
from ..fixed import SCALE, format_decimal
from .metrics import trades_to_records

__all__ = ["write_outputs"]

_WIDTH, _HEIGHT = 960, 260


def write_outputs(
    out: Path, bars: BarSeries, trades: np.ndarray, equity: np.ndarray, metrics: dict[str, Any], meta: dict[str, Any]
) -> dict[str, str]:
    """Write every output into ``out``; return the paths written by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "trades": out / "trades.csv",
        "equity": out / "equity.csv",
        "metrics": out / "metrics.json",
        "report": out / "report.html",
    }
    records = trades_to_records(trades)
    lines = ["ts_ms,side,price,qty,fee"]
    lines += [f"{r['ts']},{r['side']},{r['price']},{r['qty']},{r['fee']}" for r in records]
    paths["trades"].write_text("\n".join(lines) + "\n")
    times = bars.data["open_time"] // 1_000_000
    with open(paths["equity"], "w") as f:
        f.write("open_time_ms,equity\n")
        f.writelines(f"{t},{e:.8f}\n" for t, e in zip(times.tolist(), equity.tolist(), strict=True))
    paths["metrics"].write_bytes(orjson.dumps({"metrics": metrics, **meta}, option=orjson.OPT_INDENT_2))
    paths["report"].write_text(_html(bars, trades, equity, metrics, meta))
    return {k: str(v) for k, v in paths.items()}


def _sample(n: int, limit: int = 2000) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(n, limit)).astype(np.int64)) if n else np.zeros(0, np.int64)


def _path(xs: np.ndarray, ys: np.ndarray, lo: float, hi: float, top: float, height: float) -> str:
    span = hi - lo or 1.0
    px = xs * _WIDTH
    py = top + (1.0 - (ys - lo) / span) * height
    return "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in zip(px.tolist(), py.tolist(), strict=True))


def _html(
    bars: BarSeries, trades: np.ndarray, equity: np.ndarray, metrics: dict[str, Any], meta: dict[str, Any]
) -> str:
    n = len(equity)
    idx = _sample(n)
    xs = idx / max(n - 1, 1)
    eq = equity[idx]
    peak = np.maximum.accumulate(equity)
    dd = ((peak - equity) / peak)[idx]
    close = bars.data["close"][idx] / SCALE
    eq_path = _path(xs, eq, float(eq.min()), float(eq.max()), 10, 170)
    dd_path = _path(xs, -dd, -float(dd.max() or 1.0), 0.0, 190, 60)
    price_lo, price_hi = float(close.min()), float(close.max())
    price_path = _path(xs, close, price_lo, price_hi, 10, 230)
    marks = []
    span = price_hi - price_lo or 1.0
    for row in trades[:5000]:
        x = row["fill_index"] / max(n - 1, 1) * _WIDTH
        y = 10 + (1.0 - (row["price"] / SCALE - price_lo) / span) * 230
        colour, shape = ("#1a7f37", "▲") if row["side"] > 0 else ("#cf222e", "▼")
        title = f"{'BUY' if row['side'] > 0 else 'SELL'} {format_decimal(int(row['qty']))} @ {format_decimal(int(row['price']))}"
        marks.append(
            f'<text x="{x:.1f}" y="{y:.1f}" fill="{colour}" font-size="10" text-anchor="middle">{shape}'
            f"<title>{html.escape(title)}</title></text>"
        )
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in metrics.items())
    info = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in meta.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>VeloZ backtest: {html.escape(bars.symbol)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#1f2328}}table{{border-collapse:collapse}}
th,td{{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}}svg{{background:#fafbfc;border:1px solid #ddd}}
h2{{margin-top:28px}}</style></head><body>
<h1>Backtest: {html.escape(bars.symbol)} · {html.escape(str(meta.get("strategy", "")))}</h1>
<table>{rows}</table>
<h2>Equity and drawdown</h2>
<svg width="{_WIDTH}" height="260" viewBox="0 0 {_WIDTH} 260" role="img" aria-label="equity and drawdown">
<path d="{eq_path}" fill="none" stroke="#0969da" stroke-width="1.2"/>
<path d="{dd_path}" fill="none" stroke="#cf222e" stroke-width="1"/>
<text x="4" y="12" font-size="11">equity {eq.min():,.2f} .. {eq.max():,.2f}</text>
<text x="4" y="202" font-size="11" fill="#cf222e">drawdown (max {float(dd.max()) * 100:.2f} %)</text></svg>
<h2>Trades over price ({len(trades)} fills{", first 5,000 drawn" if len(trades) > 5000 else ""})</h2>
<svg width="{_WIDTH}" height="260" viewBox="0 0 {_WIDTH} 260" role="img" aria-label="trades over price">
<path d="{price_path}" fill="none" stroke="#57606a" stroke-width="1"/>{"".join(marks)}</svg>
<h2>Run</h2><table>{info}</table>
</body></html>
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
