"""The search commands of the ``veloz`` CLI: ``grid-search``, ``submit``, ``jobs`` and ``logs``.

``register(app)`` adds them to the main typer app. Every expected failure (bad config, missing data, unreachable
address, a job that does not exist) prints one ``error: ...`` line on stderr and exits non-zero, without a traceback.
``python -m veloz_actors.interfaces.search_cli grid-search ...`` runs the same commands without the main CLI; it is
the entrypoint ``veloz submit`` gives a Ray job.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from .._exceptions import ConfigError, VelozError

__all__ = ["register"]

_EXIT_ERROR = 2
_EXIT_INTERRUPTED = 130
_ROOT = Path(__file__).resolve().parents[2]
# What a job's working directory leaves behind: environments, VCS data, results, caches, and anything secret (the
# cluster's Ray auth token under .veloz/, credentials files, private keys): the upload lands in the cluster's storage.
_JOB_EXCLUDES = [
    ".venv",
    ".git",
    "runs",
    "out",
    ".veloz",
    "*.env",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "*.egg-info",
]


def register(app: typer.Typer) -> None:
    """Add ``grid-search``, ``submit``, ``jobs`` and ``logs`` to ``app``."""
    app.command("grid-search")(grid_search_command)
    app.command("submit")(submit_command)
    app.command("jobs")(jobs_command)
    app.command("logs")(logs_command)


def _fail(message: str, code: int = _EXIT_ERROR) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _overrides(
    data: Path | None,
    strategy: str | None,
    grid: list[str] | None,
    metric: str | None,
    random: int | None,
    seed: int | None,
    walk_forward: str | None,
    chunk_size: int | None,
    report_params: str | None = None,
    report_curves: int | None = None,
    min_trades: int | None = None,
) -> dict[str, Any]:
    from ..search.config import parse_grid_flag

    out: dict[str, Any] = {
        "data": data,
        "strategy": strategy,
        "metric": metric,
        "chunk_size": chunk_size,
        "report_params": report_params,
        "report_curves": report_curves,
        "min_trades": min_trades,
    }
    if grid:
        entries = [_grid_entry(parse_grid_flag(text)) for text in grid]
        names = [name for name, _ in entries]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:  # a dict would keep only the last flag's values: a smaller search than asked for
            raise ConfigError(
                f"--grid {twice} is given more than once; give all its values in one flag "
                f"({twice}=V1,V2,... or {twice}=START:STOP:STEP)"
            )
        out["grid"] = dict(entries)
    if random is not None or seed is not None:  # merged into the config's random section (load_config)
        out["random"] = {k: v for k, v in (("budget", random), ("seed", seed)) if v is not None}
    if walk_forward is not None:
        parts = walk_forward.split(":")
        if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"--walk-forward {walk_forward!r}: expected TRAIN_BARS:TEST_BARS[:STEP_BARS]")
        keys = ("train_bars", "test_bars", "step_bars")
        out["walk_forward"] = {k: int(v) for k, v in zip(keys, parts, strict=False)}
    return out


def _grid_entry(parsed: tuple[str, Any]) -> tuple[str, Any]:
    name, values = parsed
    return name, values.model_dump() if hasattr(values, "model_dump") else values


def _config_source(config: str | None) -> Any:
    """A config path, inline JSON (what ``submit`` hands a job), or nothing when flags say it all."""
    if config is None:
        return None
    if config.lstrip().startswith("{"):
        try:
            return json.loads(config)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"inline config is not valid JSON: {exc.msg}") from exc
    return Path(config)


ConfigArg = Annotated[
    str | None, typer.Argument(help="Search config (YAML); optional when --data, --strategy and --grid are given.")
]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Bar data file (overrides the config).")]
StrategyOpt = Annotated[str | None, typer.Option("--strategy", help="Strategy name, e.g. sma_cross.")]
GridOpt = Annotated[
    list[str] | None,
    typer.Option("--grid", help="NAME=START:STOP:STEP (stop inclusive) or NAME=V1,V2,...; repeat per parameter."),
]
MetricOpt = Annotated[
    str | None, typer.Option("--metric", help="Metric to rank by (default: the config's, or sharpe).")
]
RandomOpt = Annotated[int | None, typer.Option("--random", help="Random search: evaluate N sets drawn from the space.")]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Seed of the random search (default: the config's, else 0).")
]
WalkOpt = Annotated[
    str | None, typer.Option("--walk-forward", help="TRAIN_BARS:TEST_BARS[:STEP_BARS]: walk-forward evaluation.")
]
ChunkOpt = Annotated[int | None, typer.Option("--chunk-size", help="Parameter sets per task (default: automatic).")]
WorkersOpt = Annotated[
    int | None, typer.Option("--max-workers", help="CPUs to use (default: every core / the cluster).")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Directory for results.csv / results.parquet and report.html.")
]
ReportParamsOpt = Annotated[
    str | None,
    typer.Option(
        "--report-params",
        help="A,B: the two parameters of report.html's heatmap (default: the first two that vary).",
    ),
]
MinTradesOpt = Annotated[
    int | None,
    typer.Option("--min-trades", help="Sets with fewer round trips rank below every set with enough (default 0)."),
]
ReportCurvesOpt = Annotated[
    int | None,
    typer.Option("--report-curves", help="Equity curves of the best sets drawn in report.html (default 5, max 20)."),
]


def grid_search_command(
    config: ConfigArg = None,
    address: Annotated[
        str | None, typer.Option("--address", help="auto, HOST:PORT or ray://HOST:PORT (default: a local runtime).")
    ] = None,
    max_workers: WorkersOpt = None,
    out: OutOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Run only the sets missing from OUT/results.csv.")] = False,
    top: Annotated[int, typer.Option("--top", min=0, help="Rows of the best-K table printed at the end.")] = 10,
    data: DataOpt = None,
    strategy: StrategyOpt = None,
    grid: GridOpt = None,
    metric: MetricOpt = None,
    random: RandomOpt = None,
    seed: SeedOpt = None,
    walk_forward: WalkOpt = None,
    chunk_size: ChunkOpt = None,
    report_params: ReportParamsOpt = None,
    report_curves: ReportCurvesOpt = None,
    min_trades: MinTradesOpt = None,
) -> None:
    """Run a parameter search over Ray workers (locally or on a cluster); print the best K parameter sets."""
    from ..search.config import load_config
    from ..search.store import format_table

    if resume and out is None:
        raise _fail("--resume needs --out DIR (the directory holding results.csv)")
    last = None

    def remember(state: Any) -> None:
        nonlocal last
        last = state

    try:
        cfg = load_config(
            _config_source(config),
            overrides=_overrides(
                data,
                strategy,
                grid,
                metric,
                random,
                seed,
                walk_forward,
                chunk_size,
                report_params,
                report_curves,
                min_trades,
            ),
        )
        from ..search.runner import run_plan

        outcome = run_plan(
            cfg, address=address, max_workers=max_workers, out=out, resume=resume, top=top, on_progress=remember
        )
    except KeyboardInterrupt:
        done = f"{last.done} of {last.total} parameter sets" if last is not None else "nothing"
        where = f" saved in {out}; run the same command with --resume to finish" if out is not None else " (no --out)"
        raise _fail(f"interrupted: {done}{where}", _EXIT_INTERRUPTED) from None
    except VelozError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": ")) from None
    p = outcome.progress
    written = ", ".join(path.name for path in outcome.files)
    typer.echo(
        f"{p.done} parameter sets ({p.computed} computed, {p.resumed} resumed) in {p.elapsed_seconds:.2f} s "
        f"({p.rate_per_second:,.1f} sets/s) on {outcome.runtime.workers} workers"
        + (f"; wrote {written} in {out}" if written else ""),
        err=True,
    )
    for warning in outcome.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if top and outcome.top:
        columns = [c for c in outcome.top[0] if c != "node"] + ["node"]
        typer.echo(format_table(outcome.top[:top], columns))


def submit_command(
    config: ConfigArg = None,
    address: Annotated[str, typer.Option("--address", help="The dashboard: http[s]://[USER:PASSWORD@]HEAD[:PORT].")] = (
        "http://127.0.0.1:8265"
    ),
    max_workers: WorkersOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Results directory: an absolute path on the head node.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume")] = False,
    top: Annotated[int, typer.Option("--top", min=0)] = 10,
    data: DataOpt = None,
    strategy: StrategyOpt = None,
    grid: GridOpt = None,
    metric: MetricOpt = None,
    random: RandomOpt = None,
    seed: SeedOpt = None,
    walk_forward: WalkOpt = None,
    chunk_size: ChunkOpt = None,
    report_params: ReportParamsOpt = None,
    report_curves: ReportCurvesOpt = None,
    min_trades: MinTradesOpt = None,
    pip: Annotated[
        bool, typer.Option("--pip/--no-pip", help="Install veloz's dependencies in the job (clusters without them).")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job's logs until it ends.")] = False,
) -> None:
    """Hand a search to a Ray cluster as a Ray job; the job id is printed (follow it with `veloz logs JOB`)."""
    from ..search.config import load_config

    if out is not None and not out.is_absolute():
        # the job runs in a temporary copy of this directory that Ray deletes: a relative path would land there
        raise _fail(f"--out {out}: give a path on the head node, absolute (the job's working directory is a temporary "
                    "copy that Ray deletes)")  # fmt: skip
    try:
        cfg = load_config(
            _config_source(config),
            overrides=_overrides(
                data,
                strategy,
                grid,
                metric,
                random,
                seed,
                walk_forward,
                chunk_size,
                report_params,
                report_curves,
                min_trades,
            ),
        )
        inline = cfg.model_dump(mode="json", exclude_none=True)
        args = ["python", "-m", "veloz_actors.interfaces.search_cli", "grid-search", json.dumps(inline)]
        args += ["--address", "auto", "--top", str(top)]
        if max_workers:
            args += ["--max-workers", str(max_workers)]
        if out is not None:
            args += ["--out", str(out)]
        if resume:
            args.append("--resume")
        runtime_env: dict[str, Any] = {"working_dir": str(_ROOT), "excludes": _JOB_EXCLUDES}
        if pip:
            runtime_env["pip"] = _runtime_requirements()
    except VelozError as exc:
        raise _fail(str(exc)) from None
    with _jobs_api(address):
        client = _job_client(address)
        job_id = client.submit_job(entrypoint=shlex.join(args), runtime_env=runtime_env)
    typer.echo(job_id)
    typer.echo(f"follow it with: veloz logs {job_id} --address {_redact(address)}", err=True)
    if wait:
        with _jobs_api(address, job_id):
            _follow(client, job_id)


def jobs_command(
    address: Annotated[str, typer.Option("--address", help="http://HEAD:8265")] = "http://127.0.0.1:8265",
) -> None:
    """List the cluster's Ray jobs: id, status, start time, entrypoint."""
    with _jobs_api(address):
        jobs = _job_client(address).list_jobs()
    for job in sorted(jobs, key=lambda j: j.start_time or 0):
        entry = (job.entrypoint or "")[:80]
        typer.echo(f"{job.submission_id or job.job_id}\t{job.status}\t{job.start_time or ''}\t{entry}")


def logs_command(
    job: Annotated[str, typer.Argument(help="Job submission id (from `veloz submit` or `veloz jobs`).")],
    address: Annotated[str, typer.Option("--address", help="http://HEAD:8265")] = "http://127.0.0.1:8265",
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Stream until the job ends.")] = False,
) -> None:
    """Print a job's logs (and its final status)."""
    with _jobs_api(address):
        client = _job_client(address)
    with _jobs_api(address, job):
        if follow:
            _follow(client, job)
            return
        typer.echo(client.get_job_logs(job), nl=False)
        typer.echo(f"status: {client.get_job_status(job)}", err=True)


def _redact(address: str) -> str:
    from ..search.runtime import redact

    return redact(address, address)


def _job_client(address: str) -> Any:
    """A Ray Jobs client for the dashboard at ``address`` (``http[s]://[USER:PASSWORD@]HOST[:PORT][/PREFIX]``), once
    its host and port (default 80, 443 for https) take a TCP connection."""
    from ..search.runtime import probe_address

    parts = urlsplit(address)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number 0..65535
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ConfigError(f"--address {_redact(address)!r}: Ray Jobs need the dashboard address, http://HEAD:8265")
    probe_address(f"{parts.hostname}:{port}", speaks_ray=False)  # HTTP
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


@contextlib.contextmanager
def _jobs_api(address: str, job: str | None = None) -> Iterator[None]:
    """Any failure of the Ray Jobs API at ``address`` (about ``job``) as one ``error:`` line, exit 2: Ray's own errors
    (an :class:`~ray.exceptions.AuthenticationError` from a cluster with token auth, with the ``RAY_AUTH_*`` hint),
    HTTP and WebSocket errors (``--follow``), a job that does not exist. The address's userinfo is never shown."""
    import aiohttp
    from ray.exceptions import AuthenticationError, RayError

    from ..search.runtime import auth_hint, redact

    try:
        yield
    except typer.Exit:  # click's Exit is a RuntimeError: the command's own exit status
        raise
    except VelozError as exc:
        raise _fail(redact(str(exc), address)) from None
    except (RayError, aiohttp.ClientError, ConnectionError, RuntimeError, ValueError) as exc:
        # an AuthenticationError's str() adds a paragraph of Ray's advice; the hint below says it in one clause
        text = exc.message if isinstance(exc, AuthenticationError) else str(exc) or type(exc).__name__
        hint = f" ({auth_hint()})" if isinstance(exc, RayError) else ""
        where = f"job {job}" if job is not None else f"cannot use the Ray Jobs API at {address}"
        raise _fail(redact(f"{where}: {text.strip().splitlines()[0]}{hint}", address)) from None


def _follow(client: Any, job_id: str) -> None:
    import asyncio

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(tail())
    status = client.get_job_status(job_id)
    typer.echo(f"status: {status}", err=True)
    if str(status) != "SUCCEEDED" and getattr(status, "value", None) != "SUCCEEDED":
        raise typer.Exit(1)


def _runtime_requirements() -> list[str]:
    """veloz's direct dependencies, pinned as in pyproject.toml, minus Ray (the cluster has its own)."""
    import tomllib

    deps = tomllib.loads((_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not d.startswith("ray")]


def main() -> None:
    """``python -m veloz_actors.interfaces.search_cli``: the search commands on their own (a Ray job's entrypoint)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
    register(app)
    app(prog_name="veloz")


if __name__ == "__main__":
    main()
