"""The `cryoreg` command: synthesise a registry, run the nightly flow once."""

from __future__ import annotations

import _thread
import argparse
import atexit
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from cryoreg import config
from cryoreg.publish import runlock

EX_TEMPFAIL = 75  # sysexits.h: try again later (the warehouse is in use by another run)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
RAISE_EVERY = 5.0  # seconds between two Interrupted of one stopping run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryoreg",
        description="Liver cryoablation registry warehouse and outcome analysis "
        "(Glazer et al., AJR 2017).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic registry extract")
    synth.add_argument("out_root", type=Path, metavar="OUT_ROOT")
    synth.add_argument(
        "--profile",
        choices=("paper", "scale"),
        default="paper",
        help="paper: the cohort calibrated to the paper (default); scale: large",
    )
    synth.add_argument("--patients", type=int, help="number of patients (profile scale)")
    synth.add_argument("--seed", type=int, default=20171201, help="random seed")
    synth.add_argument(
        "--faults",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of each file's rows to corrupt with realistic defects (e.g. 0.01); the "
        "ground truth goes to OUT_ROOT/_manifest/<date>.faults.csv, which ingest never reads",
    )
    synth.add_argument(
        "--nights",
        type=int,
        default=1,
        metavar="K",
        help="K nightly extract folders: a full load, then K-1 daily deltas with new, corrected "
        "and deleted (record_status=deleted) rows; the final state is the one-night registry",
    )

    run = sub.add_parser("run", help="run the nightly flow once through Prefect")
    _add_run_paths(run)
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every dbt model from raw (automatic when the dbt project or the pseudonym"
        " key changed)",
    )
    run.add_argument(
        "--wait",
        action="store_true",
        help="wait for a running night on the same warehouse to finish instead of refusing",
    )
    serve = sub.add_parser(
        "serve",
        help="serve the nightly deployment on a cron schedule (needs PREFECT_API_URL)",
    )
    serve.add_argument("--cron", default="0 2 * * *", help="cron schedule (default: 02:00)")
    serve.add_argument(
        "--timezone",
        default="",
        help="IANA time zone of the schedule (default: CRYOREG_TIMEZONE, TZ or the system's)",
    )
    _add_run_paths(serve)
    sql = sub.add_parser(
        "sql", help="read-only SQL on the published warehouse (a prompt, or one query)"
    )
    sql.add_argument("query", nargs="?", help="run this query and print the result")
    sql.add_argument("--warehouse", type=Path, default=config.DEFAULT_WAREHOUSE)

    docs = sub.add_parser(
        "docs", help="generate the dbt docs and lineage site of the warehouse (and serve it)"
    )
    docs.add_argument(
        "--warehouse",
        type=Path,
        default=config.DEFAULT_WAREHOUSE,
        help="published DuckDB file (default: warehouse/cryoreg.duckdb); only a copy is opened",
    )
    docs.add_argument(
        "--out", type=Path, default=Path("out"), help="writes OUT/dbt_docs/ (default: out/)"
    )
    docs.add_argument("--serve", action="store_true", help="then serve it on 127.0.0.1")
    docs.add_argument("--port", type=int, default=8080, help="port for --serve (default: 8080)")
    return parser


def _add_run_paths(parser: argparse.ArgumentParser) -> None:
    """Where a nightly run reads and writes (the same for `run` and `serve`)."""
    parser.add_argument(
        "--extracts", type=Path, default=Path("extracts"), help="extracts root (default: extracts/)"
    )
    parser.add_argument(
        "--warehouse",
        type=Path,
        default=config.DEFAULT_WAREHOUSE,
        help="published DuckDB file (default: warehouse/cryoreg.duckdb)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        help="folder for metrics.json and report.html (default: out/)",
    )


def _sql(args: argparse.Namespace) -> int:
    from cryoreg.cli.sql import run_sql

    return run_sql(args.warehouse, args.query)


def _docs(args: argparse.Namespace) -> int:
    from cryoreg.cli import docs

    site = docs.generate_docs(args.warehouse, args.out)
    print(f"dbt docs: {site / 'index.html'}")
    if args.serve:
        docs.serve_docs(site, args.port)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from cryoreg.flows.deploy import serve_nightly

    config.pseudonym_key()
    serve_nightly(args.extracts, args.warehouse, args.out, args.cron, args.timezone)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from cryoreg.synth import writing as synth

    if not 0.0 <= args.faults <= synth.MAX_FAULT_RATE:
        raise config.ConfigurationError(
            f"--faults is a share of rows between 0 and {synth.MAX_FAULT_RATE}"
        )
    if args.nights < 1:
        raise config.ConfigurationError("--nights must be at least 1")
    if args.profile == "scale" and not args.patients:
        raise config.ConfigurationError("--profile scale needs --patients N")
    if args.profile == "paper" and args.patients:
        raise config.ConfigurationError("--patients applies to --profile scale only")
    folders = synth.write_registry(
        args.out_root,
        profile=args.profile,
        patients=args.patients,
        seed=args.seed,
        faults=args.faults,
        nights=args.nights,
    )
    for folder in folders:
        print(f"wrote {folder}")
        if args.faults:
            print(f"  defects: {synth.manifest_path(args.out_root, folder.name)}")
    return 0


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP, SIGINT) raised in the main thread, as Ctrl-C raises
    KeyboardInterrupt, so that the flow's own cleanup (it removes its working files) runs on the
    way out instead of the process dying in the middle of a stage."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Stop:
    """The stop signal of `cryoreg run`, if any, and what the published warehouse was before."""

    signum: int | None = None
    raised_at = -math.inf
    over = False  # the run has published or unwound: a signal now changes nothing
    warehouse: Path | None = None
    before: tuple | None = None


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


def _check_run_paths(args: argparse.Namespace) -> None:
    """Fail on a wrong path at once, before the lock and Prefect's start-up."""
    if not args.extracts.exists():
        raise config.ConfigurationError(f"--extracts {args.extracts}: no such folder")
    if not args.extracts.is_dir():
        raise config.ConfigurationError(f"--extracts {args.extracts}: not a folder")
    if args.warehouse.is_dir():
        raise config.ConfigurationError(
            f"--warehouse {args.warehouse}: is a folder; give the DuckDB file's path"
        )
    if args.out.exists() and not args.out.is_dir():
        raise config.ConfigurationError(f"--out {args.out}: not a folder")


def _say_waiting(why: str) -> None:
    print(f"cryoreg: waiting: {why}", flush=True)


def _run(args: argparse.Namespace) -> int:
    _check_run_paths(args)
    config.pseudonym_key()  # refuse early in production without a key
    # one run per warehouse, taken before Prefect starts: a refused run costs nothing
    with runlock.hold(args.warehouse, wait=args.wait, on_wait=_say_waiting):
        _Stop.warehouse, _Stop.before = args.warehouse, _fingerprint(args.warehouse)
        _start_resource_tracker()
        from cryoreg.flows import prefect_api

        api = prefect_api.start()  # its start-up overlaps the imports below
        from cryoreg.cli import summary
        from cryoreg.flows import nightly

        prefect_api.use(api, preload=nightly.STAGE_IMPORTS)
        _keep_sigterm_ours()
        began = time.monotonic()
        result = nightly.nightly(
            str(args.extracts), str(args.warehouse), str(args.out), args.full_refresh
        )
        _Stop.over = True  # the night is done: a signal from now on changes nothing
        if _Stop.signum is not None:  # a stage caught the stop and carried on
            raise Interrupted(_Stop.signum)
    print(summary.render(result, time.monotonic() - began))
    return 0


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
    args = _parser().parse_args(argv)
    code: list[int] = []
    if argv is None and args.command == "run":  # the command itself, not a call from Python
        atexit.register(_exit_without_teardown, code)  # first registered: runs last
        _catch_stop_signals()  # process-wide: only in the command's own process
    code.append(_main(args))
    return code[0]


def _main(args: argparse.Namespace) -> int:
    try:
        handlers = {"synth": _synth, "run": _run, "serve": _serve, "docs": _docs, "sql": _sql}
        handler = handlers[args.command]
        return handler(args)
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
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"cryoreg: error: {message}", file=sys.stderr)
        return 1

