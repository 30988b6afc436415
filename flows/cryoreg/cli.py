"""The `cryoreg` command: synthesise a registry, run the nightly flow once."""

from __future__ import annotations

import argparse
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
        "--faults", type=float, default=0.0, help="share of rows to corrupt (not implemented yet)"
    )
    synth.add_argument(
        "--nights",
        type=int,
        default=1,
        help="number of nightly extract folders (not implemented yet)",
    )

    run = sub.add_parser("run", help="run the nightly flow once through Prefect")
    run.add_argument(
        "--extracts", type=Path, default=Path("extracts"), help="extracts root (default: extracts/)"
    )
    run.add_argument(
        "--warehouse",
        type=Path,
        default=Path("warehouse/cryoreg.duckdb"),
        help="published DuckDB file (default: warehouse/cryoreg.duckdb)",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        help="folder for metrics.json and report.html (default: out/)",
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
    serve.add_argument("--extracts", type=Path, default=Path("extracts"))
    serve.add_argument("--warehouse", type=Path, default=Path("warehouse/cryoreg.duckdb"))
    serve.add_argument("--out", type=Path, default=Path("out"))
    return parser


def _serve(args: argparse.Namespace) -> int:
    from cryoreg.deploy import serve_nightly

    config.pseudonym_key()
    serve_nightly(args.extracts, args.warehouse, args.out, args.cron, args.timezone)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from cryoreg import synth

    if args.faults:
        raise config.ConfigurationError("--faults is not implemented yet")
    if args.nights != 1:
        raise config.ConfigurationError("--nights is not implemented yet")
    if args.profile == "scale" and not args.patients:
        raise config.ConfigurationError("--profile scale needs --patients N")
    if args.profile == "paper" and args.patients:
        raise config.ConfigurationError("--patients applies to --profile scale only")
    folders = synth.write_registry(
        args.out_root, profile=args.profile, patients=args.patients, seed=args.seed
    )
    for folder in folders:
        print(f"wrote {folder}")
    return 0


def _run(args: argparse.Namespace) -> int:
    config.pseudonym_key()  # refuse early in production without a key
    from cryoreg import pipeline, summary

    began = time.monotonic()
    result = pipeline.nightly(str(args.extracts), str(args.warehouse), str(args.out))
    print(summary.render(result, time.monotonic() - began))
    return 0


def main(argv: list[str] | None = None) -> int:
    config.set_quiet_defaults()
    args = _parser().parse_args(argv)
    try:
        handler = {"synth": _synth, "run": _run, "serve": _serve}[args.command]
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
