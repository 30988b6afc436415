"""The `cryoreg` command: synthesise a registry, run the nightly flow once."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import time
from pathlib import Path

from cryoreg import config


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
    from cryoreg.sql import run_sql

    return run_sql(args.warehouse, args.query)


def _docs(args: argparse.Namespace) -> int:
    from cryoreg import docs

    site = docs.generate_docs(args.warehouse, args.out)
    print(f"dbt docs: {site / 'index.html'}")
    if args.serve:
        docs.serve_docs(site, args.port)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from cryoreg.deploy import serve_nightly

    config.pseudonym_key()
    serve_nightly(args.extracts, args.warehouse, args.out, args.cron, args.timezone)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from cryoreg import synth

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


def _run(args: argparse.Namespace) -> int:
    config.pseudonym_key()  # refuse early in production without a key
    from cryoreg import prefect_api

    api = prefect_api.start()  # its start-up overlaps the imports below
    from cryoreg import pipeline, summary

    prefect_api.use(api, preload=pipeline.STAGE_IMPORTS)
    began = time.monotonic()
    result = pipeline.nightly(
        str(args.extracts), str(args.warehouse), str(args.out), args.full_refresh
    )
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
    code.append(_main(args))
    return code[0]


def _main(args: argparse.Namespace) -> int:
    try:
        handlers = {"synth": _synth, "run": _run, "serve": _serve, "docs": _docs, "sql": _sql}
        handler = handlers[args.command]
        return handler(args)
    except KeyboardInterrupt:
        print("cryoreg: interrupted; the published warehouse is unchanged", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, never a traceback, for every failure
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"cryoreg: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
