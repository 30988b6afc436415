"""Registry-scale benchmark: the nightly pipeline against a bare single-process reference.

For each size (the paper registry, or N synthetic patients) in a temporary folder: synth the
extracts, load them with DuckDB's own read_csv (the ingest baseline), run the bare reference
(benchmarks/reference.py), run `cryoreg run` as a subprocess (per-stage wall times from its
"stage finished" lines, peak RSS), check both metrics.json agree, then add a ~1% imaging delta
dated the next day and run the pipeline again on the published warehouse. Every command is a
subprocess measured with GNU time; a failing size is recorded, never fatal for the others.

    python benchmarks/bench.py --sizes paper 10000 100000 1000000 --label after

Appends the run to benchmarks/results.json and rewrites benchmarks/results.md from it.
Not a test: it takes minutes and needs a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
CRYOREG = str(Path(PYTHON).with_name("cryoreg"))
GNU_TIME = "/usr/bin/time"
STAGES = (
    "ingest extracts",
    "source freshness",
    "dbt build",
    "analysts' file",
    "data quality",
    "analyze",
    "report",
    "nights and trends",
    "publish",
)
STAGE_RE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d+) .*stage (started|finished): (.+?)(?: in ([\d.]+) s)?$"
)
REL_TOL = 1e-9
FILES = ("patients", "procedures", "tumors", "imaging", "adverse_events")

READ_CSV = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
began = time.perf_counter()
for path in sys.argv[2:]:
    name = path.rsplit('/', 1)[-1][:-4]
    con.execute(f"create table {name} as select * from read_csv('{path}')")
con.close()
print(f"read_csv {time.perf_counter() - began:.3f}")
"""


# --- measuring ----------------------------------------------------------------------------------


def measure(cmd: list[str], env: dict, log: Path, timeout: float) -> dict:
    """Run cmd; wall time, exit code, peak RSS (MiB, largest process of the tree), output."""
    rss_file = log.with_suffix(".time")
    wrapped = [GNU_TIME, "-v", "-o", str(rss_file), *cmd] if Path(GNU_TIME).exists() else cmd
    launched = datetime.now()
    began = time.perf_counter()
    with log.open("w") as out:
        try:
            proc = subprocess.run(
                wrapped, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.perf_counter() - began
    peak = None
    if rss_file.exists():
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", rss_file.read_text())
        peak = int(found.group(1)) / 1024 if found else None
    else:  # no GNU time: the largest child so far (an upper bound for this one)
        import resource

        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "wall_s": wall,
        "rc": rc,
        "peak_rss_mib": peak,
        "launched": launched,
        "output": log.read_text(errors="replace"),
    }


def stage_times(output: str, launched: datetime) -> dict:
    """Per-stage seconds from the flow's log, plus start-up (launch -> first stage)."""
    stages, first_start, last_end, spans = {}, None, None, []
    for line in output.splitlines():
        m = STAGE_RE.match(line.strip())
        if not m:
            continue
        clock = datetime.combine(launched.date(), datetime.strptime(m[1], "%H:%M:%S.%f").time())
        if clock < launched - timedelta(seconds=1):  # the run crossed midnight
            clock += timedelta(days=1)
        if m[2] == "started" and first_start is None:
            first_start = clock
        if m[2] == "finished":
            stages[m[3]] = float(m[4])
            last_end = clock
            spans.append((clock - timedelta(seconds=float(m[4])), clock))
    # seconds inside any stage, stages that run at the same time counted once
    busy, reach = 0.0, None
    for start, end in sorted(spans):
        start = max(start, reach) if reach else start
        if end > start:
            busy += (end - start).total_seconds()
        reach = max(reach, end) if reach else end
    out = {"stages": stages, "busy_s": busy}
    if first_start:
        out["startup_s"] = (first_start - launched).total_seconds()
        out["last_stage_end_s"] = (last_end - launched).total_seconds() if last_end else None
    return out


def compare(pipeline: dict, reference: dict, path: str = "") -> list[str]:
    """Differences on the reference's keys (the fixed ones): ints exact, floats 1e-9 rel."""
    diffs = []
    if isinstance(reference, dict):
        if not isinstance(pipeline, dict):
            return [f"{path}: missing"]
        for key, value in reference.items():
            diffs += compare(pipeline.get(key), value, f"{path}.{key}")
    elif isinstance(reference, list):
        if not isinstance(pipeline, list) or len(pipeline) != len(reference):
            return [f"{path}: {pipeline!r} != {reference!r}"]
        for i, (a, b) in enumerate(zip(pipeline, reference, strict=True)):
            diffs += compare(a, b, f"{path}[{i}]")
    elif reference is None or pipeline is None or isinstance(reference, bool | int | str):
        if pipeline != reference:
            diffs.append(f"{path}: {pipeline!r} != {reference!r}")
    elif abs(pipeline - reference) > REL_TOL * max(abs(pipeline), abs(reference)):
        diffs.append(f"{path}: {pipeline!r} != {reference!r}")
    return diffs


# --- one size ------------------------------------------------------------------------------------


def make_delta(base: Path, share: float = 0.01) -> tuple[Path, int]:
    """A next-day folder with ~share of imaging rows: half corrected findings, half new ids."""
    import duckdb

    folder = base.with_name((date.fromisoformat(base.name) + timedelta(days=1)).isoformat())
    folder.mkdir()
    src, dst = base / "imaging.csv", folder / "imaging.csv"
    modulus = round(1 / share)
    with duckdb.connect() as con:
        con.execute(
            f"""copy (
                select case when hash(imaging_id) % {2 * modulus} = 0
                            then imaging_id else imaging_id || 'D' end as imaging_id,
                       tumor_id, imaging_date, modality,
                       case finding when 'no_tumor' then 'residual_tumor'
                                    when 'residual_tumor' then 'no_tumor'
                                    else finding end as finding
                from read_csv('{src}', all_varchar = true)
                where hash(imaging_id) % {modulus} = 0
            ) to '{dst}' (header, delimiter ',')"""
        )
        rows = con.execute(f"select count(*) from read_csv('{dst}')").fetchone()[0]
    return folder, rows


def bench_size(
    size: str,
    work: Path,
    env: dict,
    delta: bool,
    timeout: float,
    server: str | None = None,
    spark: bool = False,
) -> dict:
    res: dict = {"size": size, "status": "ok", "errors": []}
    extracts, wh, out = work / "extracts", work / "wh" / "cryoreg.duckdb", work / "out"
    profile = ["--profile", "paper"]
    if size != "paper":
        profile = ["--profile", "scale", "--patients", size]

    def step(name: str, cmd: list[str], extra_env: dict | None = None) -> dict:
        print(f"  [{size}] {name} ...", flush=True)
        m = measure(cmd, {**env, **(extra_env or {})}, work / f"{name}.log", timeout)
        launched, output = m.pop("launched"), m.pop("output")
        m["launched_at"] = launched.isoformat(timespec="seconds")
        if m["rc"] != 0:
            tail = "\n".join(output.strip().splitlines()[-3:])
            raise RuntimeError(f"{name} failed (rc {m['rc']}): {tail}")
        m["_output"], m["_launched"] = output, launched
        return m

    def clean(m: dict) -> dict:
        return {k: v for k, v in m.items() if not k.startswith("_")}

    try:
        res["synth"] = clean(step("synth", [CRYOREG, "synth", str(extracts), *profile]))
        base = next(p for p in sorted(extracts.iterdir()) if p.is_dir())
        files = [base / f"{f}.csv" for f in FILES if (base / f"{f}.csv").exists()]
        res["csv_mib"] = sum(f.stat().st_size for f in files) / 2**20

        scratch = work / "read_csv.duckdb"
        m = step("read_csv", [PYTHON, "-c", READ_CSV, str(scratch), *map(str, files)])
        m["inner_s"] = float(re.search(r"read_csv ([\d.]+)", m["_output"])[1])
        res["read_csv"] = clean(m)
        scratch.unlink(missing_ok=True)

        ref_json = work / "reference.json"
        m = step("reference", [PYTHON, str(HERE / "reference.py"), str(extracts), str(ref_json)])
        m["inner_s"] = float(re.search(r"reference finished in ([\d.]+)", m["_output"])[1])
        res["reference"] = clean(m)

        m = step("pipeline", [CRYOREG, "run", "--extracts", str(extracts),
                              "--warehouse", str(wh), "--out", str(out)])  # fmt: skip
        m.update(stage_times(m["_output"], m["_launched"]))
        metrics = json.loads((out / "metrics.json").read_text())
        files_read = metrics.get("run", {}).get("files", [])
        res["rows"] = {f["file"].split("/")[-1][:-4]: f["read"] for f in files_read}
        res["rows_total"] = sum(res["rows"].values())
        m["rows_per_s"] = res["rows_total"] / m["wall_s"] if m["wall_s"] else None
        res["pipeline"] = clean(m)
        res["slowest_nodes"] = metrics.get("run", {}).get("dbt", {}).get("slowest_nodes", [])
        res["dbt_seconds"] = metrics.get("run", {}).get("dbt", {}).get("seconds_by_kind", {})
        res["warehouse_mib"] = wh.stat().st_size / 2**20
        store = wh.with_name(f"{wh.stem}.store{wh.suffix}")
        res["store_mib"] = store.stat().st_size / 2**20 if store.exists() else None
        diffs = compare(metrics, json.loads(ref_json.read_text()))
        res["metrics_match"], res["metrics_diffs"] = not diffs, diffs[:20]
        res["ratio_pipeline_reference"] = m["wall_s"] / res["reference"]["wall_s"]
        ingest = m["stages"].get("ingest extracts")
        if ingest:
            res["ratio_ingest_read_csv"] = ingest / res["read_csv"]["inner_s"]

        if spark:
            # the same extracts on Spark (local mode, this machine's cores), a new warehouse
            spark_wh, spark_out = work / "spark" / "cryoreg.duckdb", work / "spark-out"
            m = step("spark", [CRYOREG, "run", "--extracts", str(extracts),
                               "--warehouse", str(spark_wh), "--out", str(spark_out)],
                     {"CRYOREG_ENGINE": "spark"})  # fmt: skip
            m.update(stage_times(m["_output"], m["_launched"]))
            spark_metrics = json.loads((spark_out / "metrics.json").read_text())
            outcome = {k: v for k, v in metrics.items() if k != "run"}  # not ids and times
            diffs = compare(spark_metrics, outcome)
            m["metrics_match"], m["metrics_diffs"] = not diffs, diffs[:20]
            m["ratio_duckdb"] = m["wall_s"] / res["pipeline"]["wall_s"]
            m["ratio_reference"] = m["wall_s"] / res["reference"]["wall_s"]
            res["spark"] = clean(m)

        if delta:
            folder, rows = make_delta(base)
            m = step("delta", [CRYOREG, "run", "--extracts", str(extracts),
                               "--warehouse", str(wh), "--out", str(out)])  # fmt: skip
            m.update(stage_times(m["_output"], m["_launched"]))
            m["rows"], m["folder"] = rows, folder.name
            res["delta"] = clean(m)
            res["ratio_delta_full"] = m["wall_s"] / res["pipeline"]["wall_s"]
            res["ratio_delta_reference"] = m["wall_s"] / res["reference"]["wall_s"]
            delta_metrics = json.loads((out / "metrics.json").read_text())
            res["delta_slowest_nodes"] = (
                delta_metrics.get("run", {}).get("dbt", {}).get("slowest_nodes", [])
            )
            res["delta_dbt_seconds"] = (
                delta_metrics.get("run", {}).get("dbt", {}).get("seconds_by_kind", {})
            )
            step("reference_delta", [PYTHON, str(HERE / "reference.py"), str(extracts),
                                     str(ref_json)])  # fmt: skip
            diffs = compare(
                json.loads((out / "metrics.json").read_text()), json.loads(ref_json.read_text())
            )
            res["delta_metrics_match"], res["delta_metrics_diffs"] = not diffs, diffs[:20]

            # the floor of any night: no new folder, every stage still runs (the cohort-wide
            # analysis and report, dbt's per-node cost, the checks of the marts)
            m = step("noop", [CRYOREG, "run", "--extracts", str(extracts),
                              "--warehouse", str(wh), "--out", str(out)])  # fmt: skip
            m.update(stage_times(m["_output"], m["_launched"]))
            res["noop"] = clean(m)
            res["ratio_noop_full"] = m["wall_s"] / res["pipeline"]["wall_s"]

        if server and size == "paper":
            # a cold process on a warm machine, reporting to a running Prefect server (as the
            # deployment does): the published warehouse removed, every folder loaded again
            shutil.rmtree(wh.parent)
            shutil.rmtree(out)
            m = step("pipeline_server", [CRYOREG, "run", "--extracts", str(extracts),
                                         "--warehouse", str(wh), "--out", str(out)],
                     {"PREFECT_API_URL": server})  # fmt: skip
            m.update(stage_times(m["_output"], m["_launched"]))
            res["pipeline_server"] = clean(m)

        if size == "paper":
            # the first run on a machine: a new warehouse, a new PREFECT_HOME and an empty
            # start-up cache (Prefect's migrations paid once)
            shutil.rmtree(wh.parent, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            first = {"CRYOREG_CACHE_DIR": str(work / "empty-cache"),
                     "PREFECT_HOME": str(work / "prefect-first")}  # fmt: skip
            m = step("pipeline_first", [CRYOREG, "run", "--extracts", str(extracts),
                                        "--warehouse", str(wh), "--out", str(out)],
                     first)  # fmt: skip
            m.update(stage_times(m["_output"], m["_launched"]))
            res["pipeline_first"] = clean(m)
    except Exception as exc:  # one size failing must not stop the others
        res["status"] = "failed"
        res["errors"].append(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    return res


class PrefectServer:
    """A `prefect server` on 127.0.0.1 with its own PREFECT_HOME, started in the background at
    the beginning of a run (so it is up by the time the paper size needs it)."""

    def __init__(self, top: Path, env: dict) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        home = top / "prefect-server"
        home.mkdir(parents=True, exist_ok=True)
        self.log = (top / "prefect-server.log").open("w")
        self.process = subprocess.Popen(
            [str(Path(PYTHON).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env={**env, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false"},
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def url(self, timeout: float = 120) -> str | None:
        import urllib.request

        api = f"http://127.0.0.1:{self.port}/api"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    return api
            except OSError:
                time.sleep(0.5)
        print(f"prefect server on port {self.port} did not start: see its log", flush=True)
        return None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# --- reporting ----------------------------------------------------------------------------------


def machine() -> dict:
    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    versions = subprocess.run(
        [PYTHON, "-c", "import duckdb, dbt.version, prefect, lifelines; print(duckdb.__version__,"
         " dbt.version.__version__, prefect.__version__, lifelines.__version__)"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    names = ("duckdb", "dbt_core", "prefect", "lifelines")
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "ram_gib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1)
        if first("/proc/meminfo", "MemTotal") != "?"
        else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        **dict(zip(names, versions, strict=False)),
    }


def _f(value, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def render(results: dict) -> str:
    mach = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/bench.py` (see benchmarks/README.md); newest run first.",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['ram_gib']} GiB RAM, {mach['os']};"
        f" Python {mach['python']}, DuckDB {mach.get('duckdb')}, dbt-core {mach.get('dbt_core')},"
        f" Prefect {mach.get('prefect')}, lifelines {mach.get('lifelines')}.",
        "",
        "Times are wall seconds of a subprocess; RSS is the peak of the largest process (GNU time)."
        " `ratio` = pipeline / reference; `ingest x` = ingest stage / DuckDB read_csv of the same"
        " files into a table; delta = a next-day folder with ~1% of imaging rows (half corrected"
        " findings, half new ids) run on the published warehouse.",
    ]
    for run in reversed(results["runs"]):
        lines += ["", f"## {run['label']} ({run['started']})", ""]
        if run.get("note"):
            lines += [run["note"], ""]
        lines += [
            "| size | rows | CSV MiB | synth s (MiB) | read_csv s | reference s (MiB) |"
            " pipeline s | peak RSS MiB | rows/s | ratio | ingest x | delta s (% full) |"
            " no-op s (% full) | metrics equal |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in run["sizes"]:
            if r["status"] != "ok" and "pipeline" not in r:
                error = "; ".join(r["errors"])[:200]
                lines.append(f"| {r['size']} | failed: {error} |" + " |" * 12)
                continue
            syn, ref, pip = r.get("synth", {}), r.get("reference", {}), r.get("pipeline", {})
            dl = r.get("delta")
            delta = f"{dl['wall_s']:.1f} ({100 * r['ratio_delta_full']:.0f}%)" if dl else "-"
            no = r.get("noop")
            noop = f"{no['wall_s']:.1f} ({100 * r['ratio_noop_full']:.0f}%)" if no else "-"
            equal = "yes" if r.get("metrics_match") else "NO"
            if dl:
                equal += " / " + ("yes" if r.get("delta_metrics_match") else "NO")
            lines.append(
                f"| {r['size']} | {r.get('rows_total', 0):,} | {_f(r.get('csv_mib'))} |"
                f" {_f(syn.get('wall_s'))} ({_f(syn.get('peak_rss_mib'), '{:.0f}')}) |"
                f" {_f(r.get('read_csv', {}).get('inner_s'), '{:.2f}')} |"
                f" {_f(ref.get('wall_s'))} ({_f(ref.get('peak_rss_mib'), '{:.0f}')}) |"
                f" {_f(pip.get('wall_s'))} | {_f(pip.get('peak_rss_mib'), '{:.0f}')} |"
                f" {_f(pip.get('rows_per_s'), '{:,.0f}')} |"
                f" {_f(r.get('ratio_pipeline_reference'), '{:.2f}')} |"
                f" {_f(r.get('ratio_ingest_read_csv'), '{:.2f}')} | {delta} | {noop} | {equal} |"
            )
        lines += [
            "",
            "Per stage (s): full build / delta night / no-op night",
            "",
            "| size | start-up | ingest | freshness | dbt build | analysts' file | data quality |"
            " analyze | report | nights | publish | rest |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in run["sizes"]:
            cells = []
            for key in ("pipeline", "delta", "noop"):
                m = r.get(key)
                if not m:
                    continue
                st = m.get("stages", {})
                busy = m.get("busy_s", sum(st.values()))
                rest = m["wall_s"] - (m.get("startup_s") or 0) - busy
                cells.append([_f(m.get("startup_s")), *(_f(st.get(s), "{:.2f}") for s in STAGES),
                              _f(rest)])  # fmt: skip
            if cells:
                joined = [" / ".join(c) for c in zip(*cells, strict=True)]
                lines.append(f"| {r['size']} | " + " | ".join(joined) + " |")
        for r in run["sizes"]:
            full, night = r.get("slowest_nodes") or [], r.get("delta_slowest_nodes") or []
            if full:
                lines += ["", f"Slowest dbt nodes at {r['size']} (s, dbt's own timing): full build"
                          + (" / delta night" if night else ""), ""]  # fmt: skip
                by_name = {n["name"]: n["seconds"] for n in night}
                lines += [
                    f"- {n['name']}: {n['seconds']:.2f}"
                    + (f" / {by_name[n['name']]:.2f}" if n["name"] in by_name else "")
                    for n in full[:8]
                ]
            kinds = [k for k in (r.get("dbt_seconds"), r.get("delta_dbt_seconds")) if k]
            if kinds:
                names = sorted(
                    {name for k in kinds for name, seconds in k.items() if seconds >= 0.05}
                )
                lines += ["", f"dbt node time at {r['size']} by kind (s, summed over dbt's threads)"
                          + (": full build / delta night" if len(kinds) > 1 else "") + ": "
                          + ", ".join(f"{name} " + " / ".join(_f(k.get(name), "{:.1f}")
                                                              for k in kinds)
                                      for name in names)]  # fmt: skip
        sparked = [r for r in run["sizes"] if r.get("spark")]
        if sparked:
            lines += [
                "",
                "On Spark (`CRYOREG_ENGINE=spark`, local mode, a new warehouse), beside DuckDB:",
                "",
                "| size | DuckDB s | Spark s | Spark / DuckDB | Spark / reference |"
                " Spark peak RSS MiB | Spark stages (ingest / dbt / hand-over / rest) |"
                " metrics equal |",
                "|---|---:|---:|---:|---:|---:|---|---|",
            ]
            for r in sparked:
                m, st = r["spark"], r["spark"].get("stages", {})
                parts = [st.get("ingest extracts"), st.get("dbt build"),
                         st.get("hand over from Spark")]  # fmt: skip
                rest = m["wall_s"] - sum(v or 0 for v in parts)
                lines.append(
                    f"| {r['size']} | {_f(r['pipeline']['wall_s'])} | {_f(m['wall_s'])} |"
                    f" {_f(m['ratio_duckdb'], '{:.2f}')} | {_f(m['ratio_reference'], '{:.1f}')} |"
                    f" {_f(m.get('peak_rss_mib'), '{:.0f}')} |"
                    f" {' / '.join(_f(v) for v in [*parts, rest])} |"
                    f" {'yes' if m.get('metrics_match') else 'NO'} |"
                )
        for r in run["sizes"]:
            if m := r.get("pipeline_server"):
                lines.append(
                    f"\nCold `cryoreg run` on the {r['size']} registry (a new process, a new"
                    f" warehouse) reporting to a running Prefect server: {m['wall_s']:.1f} s"
                    f" (start-up {_f(m.get('startup_s'))} s, dbt build"
                    f" {_f(m.get('stages', {}).get('dbt build'))} s).\n"
                )
            if m := r.get("pipeline_first"):
                lines.append(
                    f"\nFirst `cryoreg run` on a machine, {r['size']} registry (a new warehouse,"
                    f" a new PREFECT_HOME, an empty start-up cache): {m['wall_s']:.1f} s"
                    f" (start-up {_f(m.get('startup_s'))} s).\n"
                )
        for r in run["sizes"]:
            spark_diffs = r.get("spark", {}).get("metrics_diffs", [])
            for d in r.get("metrics_diffs", []) + r.get("delta_metrics_diffs", []) + spark_diffs:
                lines.append(f"- {r['size']}: metrics differ: {d}")
            for e in r.get("errors", []):
                lines.append(f"- {r['size']}: {e[:300]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["paper", "10000", "100000", "1000000"])
    parser.add_argument("--label", default="run", help="name of this run in the results")
    parser.add_argument("--note", default="", help="one line saved with the run")
    parser.add_argument("--no-delta", action="store_true", help="skip the 1%% delta night")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: temp)")
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    parser.add_argument("--timeout", type=float, default=3600, help="per command, seconds")
    parser.add_argument(
        "--spark-sizes",
        nargs="*",
        default=["paper", "100000"],
        help="sizes also run on Spark (CRYOREG_ENGINE=spark); none: skip Spark",
    )
    parser.add_argument(
        "--no-server",
        action="store_true",
        help="skip the paper run against a running `prefect server` on 127.0.0.1",
    )
    args = parser.parse_args(argv)
    for size in args.sizes:
        if size != "paper" and not size.isdigit():
            parser.error(f"size {size!r}: 'paper' or a number of patients")

    env = dict(os.environ, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.setdefault("CRYOREG_PSEUDONYM_KEY", "benchmark-key-not-secret")
    top = args.workdir or Path(tempfile.mkdtemp(prefix="cryoreg-bench-"))
    env["PREFECT_HOME"] = str(top / "prefect")
    run = {"label": args.label, "note": args.note,
           "started": datetime.now().isoformat(timespec="seconds"), "sizes": []}  # fmt: skip
    results = json.loads(args.results.read_text()) if args.results.exists() else {"runs": []}
    results["machine"] = machine()
    server = None if args.no_server or "paper" not in args.sizes else PrefectServer(top, env)
    try:
        for size in args.sizes:
            work = top / size
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            print(f"size {size}: {work}", flush=True)
            url = server.url() if server else None
            res = bench_size(
                size, work, env, not args.no_delta, args.timeout, url, size in args.spark_sizes
            )
            run["sizes"].append(res)
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)
            results["runs"] = [r for r in results["runs"] if r is not run] + [run]
            args.results.write_text(json.dumps(results, indent=1, default=str))
            args.results.with_suffix(".md").write_text(render(results))
    finally:
        if server:
            server.stop()
        if not args.workdir:
            shutil.rmtree(top, ignore_errors=True)
    print(render({"machine": results["machine"], "runs": [run]}))
    return 0 if all(r["status"] == "ok" for r in run["sizes"]) else 1


if __name__ == "__main__":
    sys.exit(main())
