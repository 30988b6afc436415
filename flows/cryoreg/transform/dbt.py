"""Transform: run `dbt build` in-process on the registry's store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import duckdb

from cryoreg import config, preload

# What the built tables depend on: a change here may change the incremental staging models'
# logic or columns, which only a full rebuild applies to the rows staged on earlier nights.
PROJECT_CODE = ("dbt_project.yml", "models", "macros")


class TransformError(RuntimeError):
    """dbt could not build the warehouse or an error-severity test failed."""


@dataclass
class DbtSummary:
    nodes: int = 0
    passed: int = 0
    warned: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    full_refresh: str | None = None  # why every model was rebuilt from raw, if it was


def project_fingerprint(project: Path | None = None) -> str:
    """A hash of the dbt project's code (SQL, YAML, macros; not its docs)."""
    project = project or config.project_folder("dbt_project")
    digest = hashlib.sha256()
    for name in PROJECT_CODE:
        root = project / name
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and path.suffix != ".md":
                digest.update(path.relative_to(project).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_fingerprint(pseudonym_key: str) -> str:
    """What the built rows depend on besides raw: the project's code and the pseudonym key.

    A new key renames every patient_key; incremental staging would mix old and new keys, so a
    changed key forces a full rebuild like changed code. Only a one-way hash of the key
    reaches audit.dbt_builds, mixed with the code's hash.
    """
    key_digest = hashlib.sha256(b"cryoreg pseudonym key\0" + pseudonym_key.encode()).hexdigest()
    return hashlib.sha256(f"{project_fingerprint()}:{key_digest}".encode()).hexdigest()


def full_refresh_reason(warehouse: Path, fingerprint: str, forced: bool) -> str | None:
    """Why tonight's build must rebuild every model from raw, or None for an incremental one.

    Staging keeps rows staged by earlier nights' code; when the project's code changed since
    the last build (a new check, a new column), those rows would mix two versions of the
    logic, so the night restages the whole ledger once.
    """
    if forced:
        return "requested (--full-refresh)"
    if not _staging_built(warehouse):
        return None  # the first build is a full one anyway
    with duckdb.connect(str(warehouse), read_only=True) as con:
        logged = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'audit' and table_name = 'dbt_builds'"
        ).fetchone()[0]
        last = (
            con.execute(
                "select fingerprint from audit.dbt_builds order by built_at desc limit 1"
            ).fetchone()
            if logged
            else None
        )
    if last is None:
        return "the warehouse was built before dbt builds were logged"
    if last[0] != fingerprint:
        return "the dbt project or the pseudonym key changed since the last build"
    return None


def _staging_built(store: Path) -> bool:
    """Whether staging exists (in the DuckDB store, or on Spark)."""
    if config.engine() == "spark":
        from cryoreg.engine import spark as engine

        return engine.table_exists(engine.session(store, config.pseudonym_key()), STAGED)
    if not store.exists():
        return False
    with duckdb.connect(str(store), read_only=True) as con:
        return bool(
            con.execute(
                "select count(*) from information_schema.tables where table_schema = 'staging'"
            ).fetchone()[0]
        )


STAGED = "staging.stg_registry__patients"


def log_build(warehouse: Path, fingerprint: str, summary: DbtSummary) -> None:
    """Remember which code built the warehouse (audit.dbt_builds), for the next night."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            """create table if not exists audit.dbt_builds (
                fingerprint varchar, full_refresh varchar, nodes integer, built_at timestamp)"""
        )
        con.execute(
            "insert into audit.dbt_builds values (?, ?, ?, current_timestamp)",
            [fingerprint, summary.full_refresh, summary.nodes],
        )


Progress = Callable[[int, int], None]  # (nodes done, nodes in the build)


class _NodeCounter:
    """A dbt event callback: counts the build's finished nodes for `on_progress`.

    dbt announces the build's node count once (ConcurrencyLine) and fires NodeFinished as each
    node ends, from its worker threads.
    """

    def __init__(self, on_progress: Progress) -> None:
        self.on_progress = on_progress
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        name = event.info.name
        if name == "ConcurrencyLine":
            self.total = int(event.data.node_count)
            done = self.done
        elif name == "NodeFinished":
            with self._lock:
                self.done += 1
                done = self.done
        else:
            return
        if self.total:
            self.on_progress(min(done, self.total), self.total)


def dbt_build(
    warehouse: Path,
    pseudonym_key: str,
    full_refresh: bool = False,
    select: str | None = None,
    on_progress: Progress | None = None,
) -> DbtSummary:
    """Build and test every model; the profile reads the file path and key from the env.
    `on_progress(done, total)` is called as nodes finish (from dbt's threads, or as the dbt
    process reports them).

    No per-run `--vars`: dbt hashes the command-line vars into its partial-parse state, so a
    run id passed there made every night re-parse the whole project (about 3 s). With the
    same warehouse path, key and settings (the freshness thresholds, `dbt_vars`), dbt reuses
    target/partial_parse.msgpack between nights.

    The night checks data, not code: dbt's unit tests (fixed inputs, the SQL logic) run in the
    test suite (tests/test_dbt_unit.py), not here. Nor does the night write manifest.json and
    run_results.json (about 1 s): the results go to audit.check_results, `cryoreg docs`
    generates its own manifest, and partial parsing keeps its own file. Nor, unless
    DBT_LOG_LEVEL_FILE asks for it, does it keep dbt's debug log (every statement; ~12% of a
    small build's time): errors still reach the run log and audit.check_results.
    """
    fingerprint = build_fingerprint(pseudonym_key)
    reason = full_refresh_reason(warehouse, fingerprint, full_refresh)
    args = ["build", "--exclude-resource-type", "unit_test", "snapshot"]
    if reason:
        args.append("--full-refresh")
    if select:  # a part of the project (e.g. only the registry's layers)
        args += ["--select", *select.split()]
    # the build is the night's longest wait on the dbt process: the run imports its later
    # stages meanwhile
    outcome = _invoke(warehouse, pseudonym_key, args, on_progress, preload.next_module)
    summary = DbtSummary(full_refresh=reason)
    for row in outcome.results:
        name, status = row["name"], row["status"]
        summary.nodes += 1
        summary.results.append({k: row[k] for k in BUILD_FIELDS})
        if status in ("success", "pass"):
            summary.passed += 1
        elif status == "warn":
            summary.warned.append(f"{name}: {row['message']}")
        elif status not in ("skipped", "no-op"):
            summary.failed.append(f"{name}: {row['message']}")
    if not outcome.success:
        if summary.failed:
            first = summary.failed[0].splitlines()[0]
            more = f" (and {len(summary.failed) - 1} more)" if len(summary.failed) > 1 else ""
            raise TransformError(f"dbt build failed: {first}{more}")
        cause = outcome.error or "rerun with DBT_LOG_LEVEL_FILE=debug for dbt's log"
        raise TransformError(f"dbt build failed: {cause.splitlines()[0]}")
    if not select:
        log_build(warehouse, fingerprint, summary)
    return summary


def dbt_vars() -> str:
    """The settings dbt reads as vars (the sources' freshness thresholds), the same on every
    command so that partial parsing stays valid between commands and nights."""
    return json.dumps(config.freshness().dbt_vars(), sort_keys=True)


@dataclass(frozen=True)
class Outcome:
    """How a dbt command ended, as plain values (it may have run in the dbt process): whether
    it succeeded, why dbt could not run it (if it could not), and one row per node or source."""

    success: bool
    error: str | None
    results: list[dict]


# what a build's summary keeps of each node's result (audit.check_results reads them)
BUILD_FIELDS = (
    "name",
    "resource_type",
    "status",
    "failures",
    "execution_time",
    "message",
    "severity",
    "tags",
    "attached_node",
)


def _result_row(res) -> dict:
    """One node's (or source's) result, in plain values."""
    node = res.node
    return {
        "name": node.name,
        "resource_type": str(node.resource_type),
        "status": str(getattr(res.status, "value", res.status)),
        "failures": getattr(res, "failures", None),
        "execution_time": res.execution_time,
        "message": res.message,
        "severity": getattr(getattr(node, "config", None), "severity", None),
        "tags": list(getattr(node, "tags", []) or []),
        "attached_node": getattr(node, "attached_node", None),
        "source_name": getattr(node, "source_name", None),
        "max_loaded_at": getattr(res, "max_loaded_at", None),
        "age": getattr(res, "age", None),
    }


def request(warehouse: Path, pseudonym_key: str, command: list[str] | None) -> dict:
    """One dbt command on the store (None: only parse the project), quietly, without
    run_results.json and, unless DBT_LOG_LEVEL_FILE asks for it, without dbt's debug log.

    dbt writes its target/ and logs/ to the store's state folder (config.dbt_state_dir), never
    into the project, which an installed package may hold read-only; dbt's own DBT_TARGET_PATH
    and DBT_LOG_PATH win when set. On DuckDB, dbt opens the store by its file name from the
    store's folder: dbt keeps its parse between commands only while the connection's settings
    stay the same, the file's path among them, so every store of the same name shares one
    parse state, and a new store starts from the machine's cached one (`_seed_parse`) instead
    of parsing the whole project (about 3 s).
    """
    project = str(config.project_folder("dbt_project"))
    args = ["--project-dir", project, "--profiles-dir", project]
    state = config.dbt_state_dir(warehouse)
    target = Path(os.environ.get("DBT_TARGET_PATH") or state / "target")
    args += ["--target-path", str(target)]
    if not os.environ.get("DBT_LOG_PATH"):
        args += ["--log-path", str(state / "logs")]
    args += ["--no-write-json", "--vars", dbt_vars()]
    if not os.environ.get("DBT_LOG_LEVEL"):  # errors reach the night through the results
        args += ["--log-level", "none"]
    if not os.environ.get("DBT_LOG_LEVEL_FILE"):
        args += ["--log-level-file", "none"]
    spark = config.engine() == "spark"  # the session holds the warehouse's location
    env = {
        "CRYOREG_PSEUDONYM_KEY": pseudonym_key,
        "CRYOREG_ENGINE": config.engine(),
        "CRYOREG_WAREHOUSE_PATH": str(warehouse) if spark else warehouse.name,
    }
    return {
        "env": env,
        "folder": None if spark else str(warehouse.parent),
        "project": project,
        "target": str(target),
        "command": command,
        "args": args,
    }


def _invoke(
    warehouse: Path,
    pseudonym_key: str,
    command: list[str],
    on_progress: Progress | None = None,
    meanwhile: Callable[[], bool] | None = None,
) -> Outcome:
    """Run one dbt command on the store: in the dbt process when the run started one (this
    process calls `meanwhile()` while it waits, until that returns False), else here (on Spark,
    in the session started here, which dbt-spark's session method takes)."""
    from cryoreg.transform import dbt_process

    if config.engine() == "spark":
        from cryoreg.engine import spark as engine

        engine.session(warehouse, pseudonym_key)
    return dbt_process.run(request(warehouse, pseudonym_key, command), on_progress, meanwhile)


def run_request(request: dict, on_progress: Progress | None = None) -> Outcome:
    """Run a `request` in this process; `on_progress(done, total)` as nodes finish."""
    from dbt.cli.main import dbtRunner

    os.environ.update(request["env"])
    before = os.getcwd()
    if request["folder"]:
        os.chdir(request["folder"])  # nothing else reads a relative path during a dbt command
    try:
        manifest = _parsed(request["project"], request["args"], Path(request["target"]))
        if request["command"] is None:
            return Outcome(manifest is not None, None, [])
        callbacks = [_NodeCounter(on_progress)] if on_progress else []
        runner = dbtRunner(manifest=manifest, callbacks=callbacks)
        outcome = runner.invoke([*request["command"], *request["args"]])
    finally:
        _release_duckdb()
        os.chdir(before)
    results = getattr(outcome.result, "results", None) or []
    error = None if outcome.exception is None else str(outcome.exception)
    return Outcome(outcome.success, error, [_result_row(r) for r in results])


# The last parsed project, by code, store and arguments: a night's dbt commands (freshness,
# build, snapshot) parse once.
_MANIFESTS: dict[tuple, object] = {}


def _parsed(project: str, args: list[str], target: Path):
    """The project parsed by `dbt parse` once per process for its code and these arguments, or
    None when the parse failed (the command then parses itself, and reports why)."""
    from dbt.cli.main import dbtRunner

    code = project_fingerprint(Path(project))
    key = (code, config.engine(), os.getcwd(), os.environ["CRYOREG_WAREHOUSE_PATH"], *args)
    if key not in _MANIFESTS:
        cached = _parse_cache(project)
        _seed_parse(cached, target / PARSE_STATE)
        outcome = dbtRunner().invoke(["parse", *args])
        if not outcome.success:
            return None
        _keep_parse(target / PARSE_STATE, cached)
        _MANIFESTS.clear()  # one at a time: a process building many stores keeps one
        _MANIFESTS[key] = outcome.result
    return _MANIFESTS[key]


PARSE_STATE = "partial_parse.msgpack"  # dbt's own parse state, in its target folder
# what the dbt profile reads (profiles.yml), so what dbt's parse state depends on
PROFILE_ENV = (
    "CRYOREG_ENGINE",
    "CRYOREG_WAREHOUSE_PATH",
    "CRYOREG_DUCKDB_MEMORY_LIMIT",
    "CRYOREG_PSEUDONYM_KEY",
)


def _parse_cache(project: str) -> Path:
    """The machine's copy of dbt's parse state for this project, dbt, vars and profile settings
    (the engine, the store's name, the key: two registries on one machine keep one each); dbt
    itself checks that it still fits."""
    import dbt.version

    names = (project, dbt.version.__version__, dbt_vars())
    names += tuple(os.environ.get(name, "") for name in PROFILE_ENV)
    digest = hashlib.sha256("\0".join(names).encode()).hexdigest()[:16]
    return config.cache_dir() / f"dbt-parse-{digest}.msgpack"


def _seed_parse(cached: Path, state: Path) -> None:
    """Give a store without a parse state the machine's last one: dbt then reparses only the
    files that differ from it. A cache that cannot be read only costs the full parse."""
    if not state.exists() and cached.is_file():
        _copy_into_place(cached, state)


def _keep_parse(state: Path, cached: Path) -> None:
    """Keep the newest parse state in the machine's cache for the next new store."""
    try:
        newer = state.stat().st_mtime > (cached.stat().st_mtime if cached.is_file() else 0)
    except OSError:  # no parse state to keep (or the cache went meanwhile)
        return
    if newer:
        _copy_into_place(state, cached)


def _copy_into_place(source: Path, target: Path) -> None:
    """Copy under a temporary name beside `target`, then rename: a reader never sees half a
    file. A copy that fails leaves nothing behind (the cache is only ever a saving)."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except OSError:
        partial.unlink(missing_ok=True)


def _release_duckdb() -> None:
    """Close the DuckDB instance dbt-duckdb keeps open in-process after a build.

    Later stages open the same file (read-only) and publish renames it; neither may race a
    connection dbt forgot to close.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
            DuckDBConnectionManager._ENV = None


def snapshot_quarantine(warehouse: Path, pseudonym_key: str) -> None:
    """Record which rows are held back now (quarantine.snp_rejected_rows), after a night
    published: the quarantine's history is that of published nights only."""
    outcome = _invoke(warehouse, pseudonym_key, ["snapshot"])
    if not outcome.success:
        cause = outcome.error or "rerun with DBT_LOG_LEVEL_FILE=debug for dbt's log"
        raise TransformError(f"dbt snapshot of the quarantine failed: {cause.splitlines()[0]}")


@dataclass(frozen=True)
class SourceFreshness:
    """How long ago one registry file's newest ledger row was loaded, judged by dbt against the
    thresholds (hours) in effect: pass, warn, error, no rows (nothing loaded yet) or runtime
    error (the query failed; message says why)."""

    source: str  # registry.<file>
    status: str
    age_hours: float | None
    loaded_at: str | None  # ISO, UTC
    warn_after: int | None
    error_after: int | None
    message: str = ""


RUN_LOG_SOURCE = "registry.run_events"  # the schedule's heartbeat, for checks from outside a run


def source_freshness(warehouse: Path, pseudonym_key: str) -> list[SourceFreshness]:
    """`dbt source freshness` on the store's ledger: one result per registry file, by name.

    It reads only the ledger (no model), so it can run right after ingest, before the build,
    and on a night with nothing new, when a silent registry matters most.
    """
    limits = config.freshness()
    # not the run log, which this run has just written to (RUN_LOG_SOURCE)
    command = ["source", "freshness", "--exclude", f"source:{RUN_LOG_SOURCE}"]
    outcome = _invoke(warehouse, pseudonym_key, command)
    if not outcome.results and outcome.error is not None:
        raise TransformError(f"dbt source freshness failed: {outcome.error.splitlines()[0]}")
    found = []
    for row in outcome.results:
        status, loaded, age = row["status"], row["max_loaded_at"], row["age"]
        if loaded is not None and loaded.year < 1900:  # max() over no rows
            loaded = None
        if status != "runtime error" and loaded is None:
            status, age = "no rows", None
        found.append(
            SourceFreshness(
                source=f"{row['source_name']}.{row['name']}",
                status=status,
                age_hours=None if age is None else round(age / 3600, 3),
                loaded_at=None if loaded is None else loaded.astimezone(UTC).isoformat(),
                warn_after=limits.warn_after,
                error_after=limits.error_after,
                message="" if status != "runtime error" else str(row["message"] or "")[:300],
            )
        )
    return sorted(found, key=lambda f: f.source)
