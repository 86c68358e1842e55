"""The Ray side of a search: data into the object store once, chunks of parameter sets out, results streamed back.

The loop (Ray's "limit pending tasks" pattern): at most ``max_in_flight`` chunk tasks are pending; ``ray.wait``
returns whichever finishes first; its rows go to the store (and to disk) at once and a new chunk is submitted. Tasks
are scheduled ``SPREAD`` so a cluster's nodes share the work, and each row records the node that ran it. A chunk whose
worker or node dies is retried by Ray (``max_retries``) and, if Ray gives up, re-submitted here; only an error raised
by the kernel itself (bad input) stops the search. A set that fails on its own trades (beyond what VeloZ represents)
is recorded with NaN metrics, ranked last, and named in a warning; the other sets go on.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.exceptions import RayTaskError

from .._exceptions import ConfigError, InvalidInput, VelozError
from .._files import write_atomically
from .config import METRICS, SearchConfig
from .plan import SearchPlan, execute_chunk, fingerprint, is_failed, make_plan, slice_bars
from .progress import ProgressBar, SearchProgress
from .runtime import Runtime, check_max_workers, connect, probe_address
from .store import CSV_NAME, META_NAME, PARQUET_NAME, ResultStore, TopK, directory_lock

__all__ = ["SearchOutcome", "run_plan", "run_walk_forward"]

# The automatic chunk size: about this many chunks per worker (tail balance), but never a chunk so small that the
# per-task cost (~3 ms of scheduling and result handling, measured) shows: a chunk carries at least this many
# bar-steps (parameter sets x bars; 4M is ~0.1 s of kernel time), and at most _MAX_CHUNK sets (progress, retries).
_CHUNKS_PER_WORKER = 4
_MIN_CHUNK_BAR_STEPS = 4_000_000
_MAX_CHUNK = 256
# A search whose first sets all fail stops after this many (or all of them, if fewer): a failure common to every set
# (a position beyond what VeloZ represents, whatever the windows) is one error, not a night of NaN rows.
_FAILURES_BEFORE_STOPPING = 64
# Re-submissions of one chunk after Ray's own retries are exhausted (a worker or node lost again and again).
_MAX_RESUBMITS = 3
_TASK_RETRIES = 3
# What a walk-forward search writes in ``out`` (it does not resume: it always runs every fold).
WALK_FORWARD_FILES = ("walk_forward.csv", "walk_forward.parquet")

ProgressCallback = Callable[[SearchProgress], None]


@ray.remote(num_cpus=1, max_retries=_TASK_RETRIES)
def _run_chunk(prepared: Any, param_sets: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    return ray.get_runtime_context().get_node_id(), execute_chunk(prepared, param_sets)


class SearchOutcome:
    """What a finished search reports: the top rows, counts and timing; the whole table is read only when asked for.

    ``files`` are the files written (none without ``out``); ``warnings`` what the person should know about the results
    (see :class:`~veloz_actors.search.plan.SearchPlan`).
    """

    def __init__(
        self,
        table: pa.Table | Callable[[], pa.Table],
        progress: SearchProgress,
        runtime: Runtime,
        top: list[dict[str, Any]],
        *,
        files: tuple[Path, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> None:
        self._table = table
        self.progress = progress
        self.runtime = runtime
        self.top = top
        self.files = files
        self.warnings = warnings

    @property
    def table(self) -> pa.Table:
        if callable(self._table):
            self._table = self._table()
        return self._table


def run_plan(
    config: SearchConfig,
    *,
    address: str | None = None,
    max_workers: int | None = None,
    out: Path | None = None,
    resume: bool = False,
    top: int = 10,
    progress: bool | ProgressBar = True,
    on_progress: ProgressCallback | None = None,
) -> SearchOutcome:
    """Validate, connect, run every missing parameter set, and return the whole results table (see ``grid_search``).

    With ``out``, ``report.html`` is written there at the end (:mod:`.report`: the metric's heatmap, the top sets and
    their equity curves, re-run in this process). Every input is checked before the first file is written, so a
    refused search leaves ``out`` as it was."""
    probe_address(address)
    check_max_workers(max_workers)
    if resume and out is None:  # there would be nothing to resume from: every set would run again, without a word
        raise ConfigError("resume needs out, the directory holding the results.csv to resume (--out DIR)")
    if config.walk_forward is not None and resume:
        raise ConfigError(
            "--resume does not apply to a walk-forward search: it always runs every fold; run it without --resume, "
            "with a new --out"
        )
    plan = make_plan(config)
    if config.walk_forward is not None:
        return run_walk_forward(
            plan, address=address, max_workers=max_workers, out=out, progress=progress, on_progress=on_progress
        )
    shared = _prepare(plan, plan.bars)  # the kernel's own checks of data and settings, before any file is written
    bar = _bar(progress)
    values = {n: v for n, v in zip(plan.space.names, plan.space.values, strict=True)}
    meta = {**fingerprint(config, plan.bars), "warnings": list(plan.warnings)}
    with ResultStore(out, plan.param_names, values, resume=resume, fingerprint=meta) as store:
        total = plan.count()
        todo = (p for p in plan.param_sets() if not store.is_done(p))
        resumed = sum(1 for p in plan.param_sets() if store.is_done(p))
        ranking = TopK(top, config.metric, config.maximise, config.min_trades, space=plan.space)
        resumed_rows = store.take_resumed_rows()
        failed_before = sum(1 for row in resumed_rows if is_failed(row))
        ranking.add(resumed_rows)
        del resumed_rows
        failures = _Failures()
        with connect(address, max_workers) as runtime:
            chunk = config.chunk_size or _auto_chunk(total - resumed, runtime.workers, len(plan.bars))
            in_flight = config.max_in_flight or (
                runtime.workers if max_workers and not runtime.started_here else 2 * runtime.workers
            )
            prepared = ray.put(shared)
            del shared
            started = time.monotonic()
            state = SearchProgress(resumed, total, resumed, 0, 0.0)

            def finished(params: list[dict[str, Any]], node: str, metrics: list[dict[str, Any]]) -> None:
                nonlocal state
                failures.note(metrics)
                rows = [{**p, **m, "node": node} for p, m in zip(params, metrics, strict=True)]
                store.append(rows)
                failures.stop_if_all_failed(state.computed + len(rows), total - resumed)
                ranking.add(rows)
                state = SearchProgress(
                    state.done + len(rows),
                    total,
                    resumed,
                    state.computed + len(rows),
                    time.monotonic() - started,
                    state.failed_chunks,
                )
                _report(bar, on_progress, state)

            def retried() -> None:
                nonlocal state
                state = SearchProgress(
                    state.done, total, resumed, state.computed, time.monotonic() - started, state.failed_chunks + 1
                )

            _report(bar, on_progress, state)
            _drive(
                ((prepared, c) for c in _chunks(todo, chunk)),
                limit=in_flight,
                on_result=lambda args, result: finished(args[1], *result),
                on_retry=retried,
            )
            state = SearchProgress(
                state.done, total, resumed, state.computed, time.monotonic() - started, state.failed_chunks
            )
            if bar is not None:
                bar.update(state, final=True)
        names = [(n, "ascending") for n in plan.param_names]
        files = () if out is None else tuple(out / name for name in (CSV_NAME, PARQUET_NAME, META_NAME))
        failed = failures.warnings(state.computed)
        if failed_before:
            failed.append(
                f"{failed_before} of the {resumed} parameter sets read back from {CSV_NAME} could not be computed by "
                "the earlier run (NaN metrics, ranked last); a resume does not run them again"
            )
        outcome = SearchOutcome(
            lambda: store.table().sort_by(names),
            state,
            runtime,
            ranking.rows(),
            files=files,
            warnings=(*plan.warnings, *store.warnings, *failed),
        )
        if out is not None:  # still under the directory's lock
            from .report import write_search_report

            outcome.files = (*files, write_search_report(out, plan, outcome.table))
    return outcome


class _Failures:
    """The sets of a search that could not be computed (:func:`~veloz_actors.search.plan.failed_metrics`): counted,
    the first few named; each one's ``error`` is taken out of its metrics (a row holds the result columns only)."""

    _NAMED = 3

    def __init__(self) -> None:
        self.count = 0
        self.named: list[str] = []

    def note(self, metrics: list[dict[str, Any]]) -> None:
        for result in metrics:
            error = result.pop("error", None)
            if error is not None:
                self.count += 1
                if len(self.named) < self._NAMED:
                    self.named.append(error)

    def stop_if_all_failed(self, computed: int, todo: int) -> None:
        """Raise the first failure when every one of the first sets failed (see ``_FAILURES_BEFORE_STOPPING``)."""
        if self.count == computed >= min(_FAILURES_BEFORE_STOPPING, todo):
            raise InvalidInput(
                f"the {computed} parameter sets computed first all failed, so the search stops (the others would "
                f"likely fail too): {self.named[0]}"
            )

    def warnings(self, computed: int, where: str = "") -> list[str]:
        if not self.count:
            return []
        more = f"; and {self.count - len(self.named)} more" if self.count > len(self.named) else ""
        return [
            f"{self.count} of {computed} parameter sets could not be computed{where} (their rows hold NaN metrics, "
            f"ranked last): {'; '.join(self.named)}{more}"
        ]


def _prepare(plan: SearchPlan, bars: Any) -> Any:
    """The kernel's inputs plus every window's rolling sums (or period's RSI), computed once for the whole search."""
    from ._backend import kernel

    return kernel.share(kernel.prepare(bars, plan.config.strategy, plan.settings), plan.param_sets())


def _drive(
    tasks: Iterable[tuple[Any, list[dict[str, Any]]]],
    *,
    limit: int,
    on_result: Callable[[tuple[Any, list[dict[str, Any]]], Any], None],
    on_retry: Callable[[], None],
) -> None:
    """Keep at most ``limit`` chunk tasks pending; hand each result over as soon as it is ready.

    On any exit (done, a kernel error, Ctrl-C) the tasks still pending are cancelled.
    """
    pending: dict[ray.ObjectRef, tuple[tuple[Any, list[dict[str, Any]]], int]] = {}
    source = iter(tasks)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < limit:
                args = next(source, None)
                if args is None:
                    exhausted = True
                    break
                pending[_submit(args)] = (args, 0)
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                args, attempts = pending.pop(ref)
                try:
                    result = ray.get(ref, timeout=60)
                except RayTaskError as exc:
                    cause = exc.cause
                    if isinstance(cause, VelozError):
                        raise cause from None
                    raise
                except ray.exceptions.RayError:
                    # Worker or node lost beyond Ray's own retries, object lost, ...: the chunk runs again.
                    if attempts >= _MAX_RESUBMITS:
                        raise
                    on_retry()
                    pending[_submit(args)] = (args, attempts + 1)
                    continue
                on_result(args, result)
    finally:
        for ref in pending:
            ray.cancel(ref)


def _submit(args: tuple[Any, list[dict[str, Any]]]) -> ray.ObjectRef:
    return _run_chunk.options(scheduling_strategy="SPREAD").remote(*args)


def _chunks(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _auto_chunk(todo: int, workers: int, bars: int) -> int:
    balanced = math.ceil(todo / (workers * _CHUNKS_PER_WORKER))
    worth_a_task = math.ceil(_MIN_CHUNK_BAR_STEPS / max(bars, 1))
    return max(1, min(_MAX_CHUNK, max(balanced, worth_a_task)))


def _bar(progress: bool | ProgressBar) -> ProgressBar | None:
    if isinstance(progress, ProgressBar):
        return progress
    return ProgressBar() if progress else None


def _report(bar: ProgressBar | None, callback: ProgressCallback | None, state: SearchProgress) -> None:
    if bar is not None:
        bar.update(state)
    if callback is not None:
        callback(state)


# -- walk-forward --------------------------------------------------------------------------------------------------


def run_walk_forward(
    plan: SearchPlan,
    *,
    address: str | None,
    max_workers: int | None,
    out: Path | None,
    progress: bool | ProgressBar,
    on_progress: ProgressCallback | None,
) -> SearchOutcome:
    """Per fold: search the training window, then run the best set on the following test window.

    Every fold's training chunks go through the one bounded loop together, so folds overlap on the cluster. The
    table has one row per fold: ``fold, train_start_ms, test_start_ms, test_end_ms`` (the open times of the first
    bar trained on, the first tested and the last tested), the chosen parameters, the
    in-sample value of the ranking metric (``train_<metric>``), the out-of-sample metrics and ``node``. Indicators
    warm up inside each window (a test window does not see the training bars). With ``out``, the table is written to
    ``walk_forward.csv`` and ``walk_forward.parquet`` there; existing ones are never overwritten, and ``out`` is
    locked against another search while this one runs. A fold's best set is :class:`TopK`'s (ties go to the set that
    comes first in the parameter space); a fold where no set made ``min_trades`` round trips in training takes
    the best of the rest, and the outcome's warnings name it.
    """
    check_max_workers(max_workers)
    with directory_lock(out) if out is not None else contextlib.nullcontext():
        return _walk_forward(
            plan, address=address, max_workers=max_workers, out=out, progress=progress, on_progress=on_progress
        )


def _walk_forward(
    plan: SearchPlan,
    *,
    address: str | None,
    max_workers: int | None,
    out: Path | None,
    progress: bool | ProgressBar,
    on_progress: ProgressCallback | None,
) -> SearchOutcome:
    config = plan.config
    existing = [out / name for name in WALK_FORWARD_FILES if (out / name).exists()] if out is not None else []
    if existing:
        raise ConfigError(
            f"{existing[0]} already exists: a walk-forward search does not resume or overwrite; "
            "choose another --out (or delete the old results)"
        )
    bar = _bar(progress)
    total = plan.count() * len(plan.windows)
    best = {w.fold: TopK(1, config.metric, config.maximise, config.min_trades, space=plan.space) for w in plan.windows}
    times = plan.bars.data["open_time"]
    failures = _Failures()
    with connect(address, max_workers) as runtime:
        chunk = config.chunk_size or _auto_chunk(
            total, runtime.workers, max(w.train_stop - w.train_start for w in plan.windows)
        )
        in_flight = config.max_in_flight or 2 * runtime.workers
        train_refs = {
            w.fold: ray.put(_prepare(plan, slice_bars(plan.bars, w.train_start, w.train_stop))) for w in plan.windows
        }
        started = time.monotonic()
        state = SearchProgress(0, total, 0, 0, 0.0)
        fold_of = {ref: fold for fold, ref in train_refs.items()}

        def finished(args: tuple[Any, list[dict[str, Any]]], result: tuple[str, list[dict[str, Any]]]) -> None:
            nonlocal state
            ref, params = args
            _, metrics = result
            failures.note(metrics)
            failures.stop_if_all_failed(state.computed + len(params), total)
            best[fold_of[ref]].add({**p, **m} for p, m in zip(params, metrics, strict=True))
            state = SearchProgress(
                state.done + len(params), total, 0, state.computed + len(params), time.monotonic() - started
            )
            _report(bar, on_progress, state)

        _drive(
            ((train_refs[w.fold], c) for w in plan.windows for c in _chunks(plan.param_sets(), chunk)),
            limit=in_flight,
            on_result=finished,
            on_retry=lambda: None,
        )
        winners = {fold: topk.rows()[0] for fold, topk in best.items()}
        short = [fold for fold, win in winners.items() if win["n_trades"] < config.min_trades]
        test_refs = [
            _submit(
                (
                    ray.put(_prepare(plan, slice_bars(plan.bars, w.train_stop, w.test_stop))),
                    [{n: winners[w.fold][n] for n in plan.param_names}],
                )
            )
            for w in plan.windows
        ]
        tested = ray.get(test_refs, timeout=600)
        tested_failures = _Failures()
        for _, metrics in tested:
            tested_failures.note(metrics)
        if bar is not None:
            bar.update(state, final=True)
    rows = []
    for w, (node, (metrics,)) in zip(plan.windows, tested, strict=True):
        win = winners[w.fold]
        last = w.test_stop - 1  # the test window's last bar (test_stop is past it)
        rows.append(
            {
                "fold": w.fold,
                "train_start_ms": int(times[w.train_start]) // 1_000_000,
                "test_start_ms": int(times[w.train_stop]) // 1_000_000,
                "test_end_ms": int(times[last]) // 1_000_000,
                **{n: win[n] for n in plan.param_names},
                f"train_{config.metric}": win[config.metric],
                **{m: metrics[m] for m in METRICS},
                "node": node,
            }
        )
    table = pa.Table.from_pylist(rows)
    files: tuple[Path, ...] = ()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        import pyarrow.csv as pacsv

        csv_path, parquet_path = (out / name for name in WALK_FORWARD_FILES)
        csv_data, parquet_data = pa.BufferOutputStream(), pa.BufferOutputStream()
        pacsv.write_csv(table, csv_data)
        pq.write_table(table, parquet_data)
        # both flushed to the disk before either takes its name; a failed write (a full disk) leaves no temporary file
        write_atomically(
            {csv_path: csv_data.getvalue().to_pybytes(), parquet_path: parquet_data.getvalue().to_pybytes()}
        )
        files = (csv_path, parquet_path)
    warnings = (
        *plan.warnings,
        *failures.warnings(state.computed, " in the training windows"),
        *tested_failures.warnings(len(tested), " in the test windows (a fold's winner)"),
    )
    if short:
        warnings += (
            f"walk-forward fold(s) {', '.join(map(str, short))}: no parameter set made min_trades "
            f"({config.min_trades}) round trips in the training window; each of these folds took the best of the "
            f"rest by {config.metric}",
        )
    return SearchOutcome(table, state, runtime, rows, files=files, warnings=warnings)
