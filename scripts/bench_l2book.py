"""How fast the L2 book applies a real Binance depth stream (snapshot + diffs with update-id sequencing).

    .venv/bin/python scripts/bench_l2book.py [PATH ...] [--repeat 5] [--json out.json]

PATH defaults to the recorded USD-M BTCUSDT capture in ../shared/data/ticks_l2. The capture is parsed first
(:func:`veloz_actors.data.loaders.load_market_events`); only the book taking the diffs and the snapshot, in file order,
is timed, best of ``--repeat`` runs. ``scripts/bench_core.py`` reports the same figure as ``l2_depth``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from veloz_actors import InvalidInput  # noqa: E402
from veloz_actors.core.l2book import L2Book  # noqa: E402
from veloz_actors.data.loaders import load_market_events  # noqa: E402
from veloz_actors.messages import BookDelta  # noqa: E402

DEFAULT_CAPTURE = ROOT.parent / "shared" / "data" / "ticks_l2" / "binance_usdm_btcusdt_20240808_ws.txt.gz"


def _market_of(path: Any) -> str:
    name = str(path).rsplit("/", 1)[-1]
    return "spot" if "_spot_" in name or name.startswith("spot") else "futures"


def bench_depth(path: Any, repeat: int = 5, events: Sequence[Any] | None = None) -> dict[str, Any]:
    """Measure how fast :class:`L2Book` applies a real capture's depth stream (``binance_{spot,usdm,cm}_*`` files).

    The best of ``repeat`` runs is reported::

        {"path", "market", "diffs", "level_updates", "seconds",
         "level_updates_per_second", "diffs_per_second", "last_update_id"}

    ``diffs``/``level_updates`` count what the book applied (diffs already contained in the snapshot are not counted).
    ``events`` skips loading when the caller already holds ``load_market_events(path)``.
    """
    if events is None:
        events = load_market_events(path)
    deltas = [e for e in events if isinstance(e, BookDelta)]
    if not any(d.is_snapshot for d in deltas):
        raise InvalidInput(f"{path}: the capture has no depth snapshot to build a book from")
    market = _market_of(path)
    symbol = deltas[0].symbol
    best = float("inf")
    book = L2Book(symbol, market)
    for _ in range(max(1, repeat)):
        book = L2Book(symbol, market, buffer_limit=len(deltas) + 1)
        apply = book.apply
        apply_snapshot = book.apply_snapshot
        start = time.perf_counter()
        for delta in deltas:
            if delta.is_snapshot:
                apply_snapshot(delta)
            else:
                apply(delta)
        best = min(best, time.perf_counter() - start)
    return {
        "path": str(path),
        "market": market,
        "diffs": book.diffs_applied,
        "level_updates": book.levels_applied,
        "seconds": best,
        "level_updates_per_second": book.levels_applied / best,
        "diffs_per_second": book.diffs_applied / best,
        "last_update_id": book.last_update_id,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, default=[DEFAULT_CAPTURE])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [bench_depth(path, args.repeat) for path in args.paths]
    for row in results:
        print(
            f"{Path(row['path']).name}: {row['level_updates_per_second']:,.0f} level updates/s, "
            f"{row['diffs_per_second']:,.0f} diffs/s ({row['diffs']:,} diffs, {row['market']})"
        )
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
