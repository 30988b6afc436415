"""The `cryoreg` command: synthesise a registry, run the nightly flow once, serve it nightly,
document and query the warehouse."""

# ruff: noqa: E402 - the launch time is taken before the imports

from __future__ import annotations

import time

LAUNCHED = time.monotonic()  # before the imports below: the run's total counts its start-up

import _thread
import atexit
import contextlib
import functools
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Literal

import typer

from cryoreg import config
from cryoreg.publish import runlock

EX_TEMPFAIL = 75  # sysexits.h: try again later (the warehouse is in use by another run)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
RAISE_EVERY = 5.0  # seconds between two Interrupted of one stopping run

app = typer.Typer(
    name="cryoreg",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _option(help: str | None = None, *names: str, **kwargs) -> typer.models.OptionInfo:
    """An option (named after its parameter, or `names`) whose help says its default itself,
    where it matters."""
    return typer.Option(*names, help=help, show_default=False, **kwargs)


# where a nightly run reads and writes (the same for `run` and `serve`)
Extracts = Annotated[Path, _option("extracts root (default: extracts/)")]
Warehouse = Annotated[Path, _option("published DuckDB file (default: warehouse/cryoreg.duckdb)")]
Out = Annotated[Path, _option("folder for metrics.json and report.html (default: out/)")]


def _guarded(command):
    """Run a command and turn every failure into its exit code and one line on stderr, never a
    traceback (the command runs inside click, which would turn a stop into its own exit)."""

    @functools.wraps(command)
    def run(*args, **kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except runlock.RunLockedError as exc:
            print(f"cryoreg: error: {exc}", file=sys.stderr)
            return EX_TEMPFAIL
        except BaseException as exc:  # one clear line, never a traceback, for every failure
            signum = _Stop.signum  # whatever unwound the run (dbt turns a signal into a failure)
            if signum is None and isinstance(exc, KeyboardInterrupt):
                signum = signal.SIGINT
            if signum is not None:
                _Stop.over = True
                print(_interrupted_line(signum), file=sys.stderr)
                return 128 + signum
            if not isinstance(exc, Exception):
                raise
            text = str(exc).strip()
            message = text.splitlines()[0] if text else type(exc).__name__
            if _Stop.log is not None:
                message += f" (full log: {_Stop.log})"
            print(f"cryoreg: error: {message}", file=sys.stderr)
            return 1

    return run


def _print_version(value: bool) -> None:
    if value:
        from cryoreg import code_version

        print(f"cryoreg {code_version()}")
        raise typer.Exit()


@app.callback()
def _cryoreg(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Liver cryoablation registry warehouse and outcome analysis (Glazer et al., AJR 2017)."""


@app.command(help="write a synthetic registry extract")
@_guarded
def synth(
    out_root: Annotated[Path, typer.Argument(metavar="OUT_ROOT", show_default=False)],
    profile: Annotated[
        Literal["paper", "scale"],
        _option("paper: the cohort calibrated to the paper (default); scale: large"),
    ] = "paper",
    patients: Annotated[int | None, _option("number of patients (profile scale)")] = None,
    seed: Annotated[int, _option("random seed")] = 20171201,
    faults: Annotated[
        float,
        _option(
            "share of each file's rows to corrupt with realistic defects (e.g. 0.01); the "
            "ground truth goes to OUT_ROOT/_manifest/<date>.faults.csv, which ingest never reads",
            metavar="RATE",
        ),
    ] = 0.0,
    nights: Annotated[
        int,
        _option(
            "K nightly extract folders: a full load, then K-1 daily deltas with new, corrected "
            "and deleted (record_status=deleted) rows; the final state is the one-night registry",
            metavar="K",
        ),
    ] = 1,
) -> int:
    from cryoreg.synth.faults import MAX_FAULT_RATE, manifest_path
    from cryoreg.synth.writing import write_registry

    if not 0.0 <= faults <= MAX_FAULT_RATE:
        raise config.ConfigurationError(
            f"--faults is a share of rows between 0 and {MAX_FAULT_RATE}"
        )
    if nights < 1:
        raise config.ConfigurationError("--nights must be at least 1")
    if profile == "scale" and not patients:
        raise config.ConfigurationError("--profile scale needs --patients N")
    if profile == "paper" and patients:
        raise config.ConfigurationError("--patients applies to --profile scale only")
    folders = write_registry(
        out_root, profile=profile, patients=patients, seed=seed, faults=faults, nights=nights
    )
    for folder in folders:
        print(f"wrote {folder}")
        if faults:
            print(f"  defects: {manifest_path(out_root, folder.name)}")
    return 0


@app.command(help="run the nightly flow once through Prefect")
@_guarded
def run(
    extracts: Extracts = Path("extracts"),
    warehouse: Warehouse = config.DEFAULT_WAREHOUSE,
    out: Out = Path("out"),
    full_refresh: Annotated[
        bool,
        _option(
            "rebuild every dbt model from raw (automatic when the dbt project or the pseudonym"
            " key changed)",
            "--full-refresh",
        ),
    ] = False,
    wait: Annotated[
        bool,
        _option(
            "wait for a running night on the same warehouse to finish instead of refusing",
            "--wait",
        ),
    ] = False,
) -> int:
    _check_run_paths(extracts, warehouse, out)
    config.pseudonym_key()  # refuse early in production without a key
    spark = config.engine() == "spark"
    if spark:
        from cryoreg.engine import spark as engine

        engine.check_installed()
    # one run per warehouse, taken before Prefect starts: a refused run costs nothing
    with runlock.hold(warehouse, wait=wait, on_wait=_say_waiting):
        _Stop.warehouse, _Stop.before = warehouse, _fingerprint(warehouse)
        _start_resource_tracker()
        with _stage_list() as stages:
            from cryoreg.flows import prefect_api

            api = prefect_api.start()  # its start-up overlaps the imports below
            if spark:
                engine.warm_up(warehouse.resolve())  # and the JVM's
            else:  # and dbt's imports and parse, in the dbt process
                from cryoreg.transform import dbt, dbt_process

                store = config.store_path(warehouse.resolve())
                log = config.dbt_state_dir(store) / "logs" / "dbt-process.log"
                dbt_process.start(dbt.request(store, config.pseudonym_key(), None), log)
            from cryoreg import preload
            from cryoreg.flows import nightly

            dbt_here = nightly.DBT_IMPORTS if spark else ()
            preload.plan((*dbt_here, *nightly.STAGE_IMPORTS))
            # with the dbt process, the machine's cores are busy until the API is up: the run
            # imports its later stages while the dbt process builds
            prefect_api.use(api, preload=spark)
            _keep_sigterm_ours()
            from cryoreg.flows import run_log

            with (
                run_log.to_file(warehouse) as _Stop.log,
                stages.following_the_run() if stages else contextlib.nullcontext(),
                prefect_api.run_settings(api),
            ):
                result = nightly.nightly(str(extracts), str(warehouse), str(out), full_refresh)
            _Stop.over = True  # the night is done: a signal from now on changes nothing
            if _Stop.signum is not None:  # a stage caught the stop and carried on
                raise Interrupted(_Stop.signum)
    from cryoreg.cli import summary

    seconds = time.monotonic() - LAUNCHED
    if stages:
        stages.console.print(summary.render_rich(result, seconds))
    else:
        print(summary.render(result, seconds))
    return 0


@app.command(help="serve the nightly deployment on a cron schedule (needs PREFECT_API_URL)")
@_guarded
def serve(
    cron: Annotated[str, _option("cron schedule (default: 02:00)")] = "0 2 * * *",
    timezone: Annotated[
        str,
        _option("IANA time zone of the schedule (default: CRYOREG_TIMEZONE, TZ or the system's)"),
    ] = "",
    extracts: Extracts = Path("extracts"),
    warehouse: Warehouse = config.DEFAULT_WAREHOUSE,
    out: Out = Path("out"),
    notify_url: Annotated[
        str | None,
        _option(
            "send an alert to this webhook when a night fails or crashes, or ends with warned"
            " checks (default: CRYOREG_NOTIFY_URL; unset: no alerts)",
            metavar="URL",
        ),
    ] = None,
) -> int:
    from cryoreg.flows.deploy import serve_nightly

    config.pseudonym_key()
    serve_nightly(extracts, warehouse, out, cron, timezone, config.notify_url(notify_url))
    return 0


@app.command(help="read-only SQL on the published warehouse (a prompt, a piped file, or one query)")
@_guarded
def sql(
    query: Annotated[
        str | None,
        typer.Argument(help="run these statements and print each result", show_default=False),
    ] = None,
    warehouse: Annotated[Path, _option()] = config.DEFAULT_WAREHOUSE,
    format: Annotated[str, _option("table (default), csv or json")] = "table",
    output: Annotated[
        Path | None, _option("write the results to this file instead of the terminal")
    ] = None,
) -> int:
    from cryoreg.cli.sql import run_sql

    return run_sql(warehouse, query, format, output)


@app.command(help="generate the dbt docs and lineage site of the warehouse (and serve it)")
@_guarded
def docs(
    warehouse: Annotated[
        Path,
        _option("published DuckDB file (default: warehouse/cryoreg.duckdb); only a copy is opened"),
    ] = config.DEFAULT_WAREHOUSE,
    out: Annotated[Path, _option("writes OUT/dbt_docs/ (default: out/)")] = Path("out"),
    serve: Annotated[
        bool,
        _option("then serve OUT (report, nights, Data Docs, dbt docs) on 127.0.0.1", "--serve"),
    ] = False,
    port: Annotated[int, _option("port for --serve (default: 8080)")] = 8080,
) -> int:
    from cryoreg.cli import docs as site

    index = site.generate_docs(warehouse, out)
    print(f"dbt docs: {index / 'index.html'}")
    if serve:
        site.serve_docs(out, port)
    return 0


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP, SIGINT) raised in the main thread, as Ctrl-C raises
    KeyboardInterrupt, so that the flow's own cleanup (it removes its working files) runs on the
    way out instead of the process dying in the middle of a stage."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Stop:
    """The stop signal of `cryoreg run`, if any, what the published warehouse was before, and
    the run's log file."""

    signum: int | None = None
    raised_at = -math.inf
    over = False  # the run has published or unwound: a signal now changes nothing
    warehouse: Path | None = None
    before: tuple | None = None
    log: Path | None = None


def _on_stop_signal(signum: int, frame) -> None:
    """Raise Interrupted in the main thread, at most once every RAISE_EVERY seconds: a second
    Ctrl-C right after the first must not cut its cleanup short."""
    now = time.monotonic()
    if _Stop.over or now - _Stop.raised_at < RAISE_EVERY:
        return
    if _Stop.signum is None:
        _Stop.signum = signum
        threading.Thread(target=_insist, name="cryoreg-stop", daemon=True).start()
    _Stop.raised_at = now
    raise Interrupted(_Stop.signum)


def _insist() -> None:
    """Until the run has unwound, raise the stop again now and then: libraries may turn it into
    an ordinary error (DuckDB: 'Query interrupted'; dbt: a failed build) that code can catch."""
    while not _Stop.over:
        time.sleep(RAISE_EVERY)
        if not _Stop.over and _Stop.signum is not None:
            _thread.interrupt_main(_Stop.signum)  # runs _on_stop_signal in the main thread


def _catch_stop_signals() -> None:
    """SIGTERM (a scheduler or `kill`), SIGHUP (the terminal closed) and SIGINT (Ctrl-C) all
    stop the run the same way: Interrupted in the main thread."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)


def _start_resource_tracker() -> None:
    """The signal goes to the whole process group, where multiprocessing's resource tracker (a
    helper process the data quality stage starts) ignores SIGINT and SIGTERM but dies of SIGHUP,
    and the one started in its place prints tracebacks: start it now, with SIGHUP blocked (the
    tracker keeps the mask; here a SIGHUP meanwhile is delivered on unblocking)."""
    from multiprocessing import resource_tracker

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def _keep_sigterm_ours() -> None:
    """While a flow runs, Prefect swaps in its own SIGTERM handler, which raises its
    TerminationSignal: not a KeyboardInterrupt, so dbt would neither stop its threads (they go on
    writing the run's working files) nor let it through (it becomes a failed build). Have Prefect
    install ours instead; it restores ours after the flow."""
    from prefect.utilities import engine

    if signal.getsignal(signal.SIGTERM) is _on_stop_signal:  # the command, not a call from Python
        engine._prefect_sigterm_handler = _on_stop_signal


def _fingerprint(path: Path) -> tuple | None:
    """Which file is published (publish replaces it: a new inode), or None."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _interrupted_line(signum: int) -> str:
    name = signal.Signals(signum).name
    if _Stop.warehouse is not None and _fingerprint(_Stop.warehouse) != _Stop.before:
        return f"cryoreg: interrupted by {name} after the warehouse was published"
    return f"cryoreg: interrupted by {name}; the published warehouse is unchanged"


def _check_run_paths(extracts: Path, warehouse: Path, out: Path) -> None:
    """Fail on a wrong path at once, before the lock and Prefect's start-up."""
    if not extracts.exists():
        raise config.ConfigurationError(f"--extracts {extracts}: no such folder")
    if not extracts.is_dir():
        raise config.ConfigurationError(f"--extracts {extracts}: not a folder")
    if warehouse.is_dir():
        raise config.ConfigurationError(
            f"--warehouse {warehouse}: is a folder; give the DuckDB file's path"
        )
    if out.exists() and not out.is_dir():
        raise config.ConfigurationError(f"--out {out}: not a folder")


def _say_waiting(why: str) -> None:
    print(f"cryoreg: waiting: {why}", flush=True)


@contextlib.contextmanager
def _stage_list():
    """On a terminal, the live list of the run's stages while it works; elsewhere (cron, CI,
    a pipe) None, and the run log's plain lines as they always were."""
    if not sys.stdout.isatty():
        yield None
        return
    from rich.console import Console
    from rich.live import Live

    from cryoreg.cli.summary import StageList

    stages = StageList(LAUNCHED, Console())
    with Live(stages, console=stages.console, refresh_per_second=4, redirect_stderr=False):
        try:
            yield stages
        except BaseException as exc:
            stopped = _Stop.signum is not None or isinstance(exc, KeyboardInterrupt)
            stages.end("interrupted" if stopped else "failed")
            raise


def _exit_without_teardown(code: list[int]) -> None:
    """The last exit hook of the `cryoreg run` command: end the process without Python's
    teardown, which frees every object of dbt, Great Expectations, pandas... one by one (about
    2 s). It runs after the other hooks: Prefect has sent its logs, the temporary API server is
    stopped, and every DuckDB file was closed by its stage."""
    if not code:
        return  # main() did not return: let Python report and exit as usual
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code[0])


def main(argv: list[str] | None = None) -> int:
    config.set_quiet_defaults()
    args = sys.argv[1:] if argv is None else list(argv)
    code: list[int] = []
    if argv is None and args[:1] == ["run"]:  # the command itself, not a call from Python
        atexit.register(_exit_without_teardown, code)  # first registered: runs last
        _catch_stop_signals()  # process-wide: only in the command's own process
    command = typer.main.get_command(app)
    try:
        code.append(command.main(args, prog_name="cryoreg", standalone_mode=False))
    except typer.TyperException as exc:  # a usage error: the usage, then one line; exit 2
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            print(ctx.get_usage(), file=sys.stderr)
        where = ctx.command_path if ctx is not None else "cryoreg"
        print(f"{where}: error: {exc.format_message()}", file=sys.stderr)
        code.append(exc.exit_code)
    return code[0]
