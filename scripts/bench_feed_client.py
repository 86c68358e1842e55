"""The Binance market-data client alone, in one process, no socket: CPU per frame of its parsing, book sync and batching.

    .venv/bin/python scripts/bench_feed_client.py [--repeat 5] [--profile]

The two 2024 spot captures (BTCUSDT and ETHUSDT, 74,865 frames: 52,117 book tickers, 15,863 trades, 6,885 depth
diffs) are fed, in receive order, to :class:`~veloz_actors.venues.binance.market_data.BinanceMarketData`'s frame
handler as the reader would queue them (the recorded bytes of each combined-stream frame), each symbol's REST snapshot
applied at its place in the capture, and the pending events handed to a columnar sink every 1,000 frames. What is
left out, and measured by ``scripts/bench_feed.py`` instead: the socket (aiohttp's reader), the event loop, and the
hand-over to the venue actors.

The figure is process CPU time per frame (the least of ``--repeat`` runs, and the median); every run starts with a
fresh client and the same cache of parsed numbers as the first (cleared), as a live process starts. On a loaded
machine count instructions instead::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=F .venv/bin/python scripts/bench_feed_client.py \\
        --repeat 1   # minus the same with --repeat 0 (loading only)

``--check`` verifies the output instead: every book rebuilt from it equals the client's own, and prints a digest of
the rows and levels, to compare two versions of the client.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ticks_l2"
CAPTURES = [DATA / "binance_spot_btcusdt_20240808_ws.txt.gz", DATA / "binance_spot_ethusdt_20240808_ws.txt.gz"]
sys.path.insert(0, str(ROOT))

from veloz_actors.core.kernel import tune_gc  # noqa: E402
from veloz_actors.core.l2book import L2Book  # noqa: E402
from veloz_actors.core.market_batch import MarketBatch  # noqa: E402
from veloz_actors.messages import BookDelta  # noqa: E402
from veloz_actors.venues.binance import schemas  # noqa: E402
from veloz_actors.venues.binance.market_data import BinanceMarketData, MarketDataSettings  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FLUSH_EVERY = 1000


def load() -> list[tuple[int, str | None, bytes]]:
    """``(receive ns, symbol of a REST snapshot or None, the line's JSON)`` of both captures, in receive order."""
    lines = []
    for path in CAPTURES:
        symbol = path.name.split("_")[2].upper()
        with gzip.open(path, "rb") as f:
            for line in f:
                ts, _, body = line.rstrip(b"\n").partition(b" ")
                lines.append((int(ts), symbol if body.startswith(b'{"lastUpdateId"') else None, body))
    lines.sort(key=lambda item: item[0])
    return lines


def run(lines: list[tuple[int, str | None, bytes]]) -> tuple[BinanceMarketData, list[Any]]:
    """One pass of a fresh client over ``lines``; returns it and the batches it handed over."""
    settings = MarketDataSettings(rest_url="http://127.0.0.1:1", stream_url="ws://127.0.0.1:1", symbols=SYMBOLS)
    out: list[Any] = []
    client = BinanceMarketData(settings, out.append, columnar=True)
    frame = client._frame
    frames = 0
    for ts, snapshot_of, body in lines:
        if snapshot_of is not None:  # what the client's sync task does with the REST answer
            snapshot = schemas.parse_depth_snapshot(orjson.loads(body), ts, snapshot_of)
            emitted = client._feeds[snapshot_of].on_snapshot(snapshot)
            for event in emitted or ():
                client._emit(event)
            continue
        frame(body, ts)
        frames += 1
        if frames % FLUSH_EVERY == 0:
            client._flush()
    client._flush()
    return client, out


def check(lines: list[tuple[int, str | None, bytes]]) -> None:
    client, out = run(lines)
    whole = MarketBatch.concat(out)
    events = whole.events()
    for symbol in SYMBOLS:
        book = L2Book(symbol)
        for e in events:
            if type(e) is BookDelta and e.symbol == symbol:
                book.apply_snapshot(e) if e.is_snapshot else book.apply(e)
        assert book.depth(10**6) == client.book(symbol).depth(10**6), f"{symbol}: the output does not rebuild the book"
    digest = hashlib.sha256(whole.rows[:, :9].tobytes() + whole.levels.tobytes()).hexdigest()[:16]
    print(f"{len(whole)} events, bad input {client.status()['bad_input']}, books rebuilt equal; digest {digest}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="one run under cProfile, the top functions")
    parser.add_argument("--check", action="store_true", help="verify the output (see the module docstring)")
    args = parser.parse_args()
    tune_gc()
    lines = load()
    frames = sum(1 for _, snapshot_of, _ in lines if snapshot_of is None)
    if args.check:
        check(lines)
        return 0
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(run, lines)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return 0
    seconds = []
    for _ in range(args.repeat):
        schemas._UNITS_CACHE.clear()
        began = time.process_time()
        run(lines)
        seconds.append(time.process_time() - began)
    if seconds:
        seconds.sort()
        print(
            f"{frames} frames; CPU per frame: least {seconds[0] / frames * 1e6:.2f} us, median "
            f"{seconds[len(seconds) // 2] / frames * 1e6:.2f} us (runs: {', '.join(f'{s:.3f}' for s in seconds)} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
