"""What `cryoreg run` prints: on a terminal, the live list of its stages and the summary as
tables; elsewhere (cron, CI, a pipe), the run log and the summary as plain lines, which users and
tests grep."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.rule import Rule
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from cryoreg.flows import progress
from cryoreg.report.text import age_text, check_counts, p_text, proportion_text


def render(result: dict, seconds: float) -> str:
    metrics = result["metrics"]
    lines = ["", "cryoreg run summary", "=" * 19, ""]
    if result.get("nothing_new"):
        lines += [
            "nothing new: every extract folder is loaded already and the code is unchanged;",
            f"the published warehouse stays as it is ({result['warehouse']})",
            *_quality_lines(result.get("data_quality")),
            f"finished in {seconds:.1f} s",
        ]
        return "\n".join(lines)
    files = metrics.get("run", {}).get("files", [])
    if files:
        lines.append(f"{'file':<34}{'read':>10}{'loaded':>10}{'quarantined':>13}")
        for f in files:
            lines.append(f"{f['file']:<34}{f['read']:>10}{f['loaded']:>10}{f['quarantined']:>13}")
    else:
        lines.append("no new extract folder: nothing loaded (re-run of a loaded night)")
    lines += [f"note: {w}" for w in metrics.get("run", {}).get("warnings", [])]
    cohort = metrics["cohort"]
    te, ltp, ae = (
        metrics["technique_efficacy"],
        metrics["local_tumor_progression"],
        metrics["adverse_events"],
    )
    lines += [
        "",
        f"patients {cohort['patients']}, procedures {cohort['procedures']}, "
        f"tumors {cohort['tumors']}",
        f"technical success      {proportion_text(metrics['technical_success']['all'])}",
        f"technique efficacy     {proportion_text(te['all'])}",
        f"  <4 cm / >=4 cm       {proportion_text(te['lt4cm'])} / {proportion_text(te['ge4cm'])}, "
        f"p {p_text(te.get('p_chi2'))}",
        f"local progression      {proportion_text(ltp['all'])}",
        f"  <4 cm / >=4 cm       {proportion_text(ltp['lt4cm'])} / "
        f"{proportion_text(ltp['ge4cm'])}, "
        f"p {p_text(ltp.get('p_chi2'))}",
        f"any / major AE         {proportion_text(ae['any'])} / {proportion_text(ae['major'])}",
        f"log-rank (LTP-free)    p {p_text(metrics['ltp_free_survival'].get('logrank_p'))}",
        "",
        *_quality_lines(metrics.get("run", {}).get("data_quality")),
        f"warehouse  {result['warehouse']}",
    ]
    lines += [f"output     {p}" for p in result["published"]]
    lines.append(f"finished in {seconds:.1f} s")
    return "\n".join(lines)


def _quality_lines(status: dict | None) -> list[str]:
    line = freshness_line(status)
    return ([line] if line else []) + [data_quality_line(status)]


def freshness_line(status: dict | None) -> str | None:
    """The registry's source freshness in one line: how old each file's newest rows are (the
    stale ones by name) against the thresholds; None when it was not checked."""
    fresh = (status or {}).get("freshness")
    if not fresh:
        return None
    limits = ", ".join(
        f"{word} after {fresh[key]} h"
        for word, key in (("warn", "warn_after_hours"), ("error", "error_after_hours"))
        if fresh.get(key)
    )
    sources = fresh["sources"]
    stale = [s for s in sources if s["kind"] in ("warned", "failed")]
    ages = [s["age_hours"] for s in sources if s["age_hours"] is not None]
    if stale:
        what = ", ".join(
            f"{s['source'].rsplit('.', 1)[-1]} {age_text(s['age_hours'])}"
            if s["age_hours"] is not None
            else f"{s['source'].rsplit('.', 1)[-1]} could not be checked"
            for s in stale
        )
        what = f"stale: {what}"
    elif ages:
        what = f"{len(sources)} files, newest rows at most {age_text(max(ages))} old"
    else:
        what = "no rows loaded yet"
    return f"registry freshness: {fresh['status']} ({what}; {limits or 'no thresholds'})"


def data_quality_line(status: dict | None) -> str:
    if not status:
        return "data quality: not checked"
    line = (
        f"data quality: {status['status']} ({status['checks']} checks: "
        f"{check_counts(status['kinds'])}); see audit.check_results"
    )
    return "\n".join([line, *(f"  warned: {w}" for w in status["warnings"])])


def render_rich(result: dict, seconds: float) -> Group:
    """The summary of `render` for a terminal: the file accounting and the key metrics (the
    rows of the run's Prefect artifact) as tables."""
    from cryoreg.flows.artifacts import ROWS  # imports Prefect: only once the run is over

    if result.get("nothing_new"):
        return Group(Text(render(result, seconds)))
    parts: list = [Text(), Rule("cryoreg run summary", align="left")]
    metrics = result["metrics"]
    run = metrics.get("run", {})
    if run.get("files"):
        files = Table(title="rows per extract file", title_justify="left")
        files.add_column("file")
        for column in ("read", "loaded", "quarantined"):
            files.add_column(column, justify="right")
        for f in run["files"]:
            held = Text(f"{f['quarantined']:,}", style="yellow" if f["quarantined"] else "")
            files.add_row(f["file"], f"{f['read']:,}", f"{f['loaded']:,}", held)
        parts.append(files)
    else:
        parts.append(Text("no new extract folder: nothing loaded (re-run of a loaded night)"))
    parts += [Text(f"note: {w}", style="yellow") for w in run.get("warnings", [])]
    cohort = metrics["cohort"]
    outcomes = Table(
        title=f"patients {cohort['patients']}, procedures {cohort['procedures']}, "
        f"tumors {cohort['tumors']}",
        title_justify="left",
    )
    for column in ("outcome", "this run", "p"):
        outcomes.add_column(column)
    for label, block, key in ROWS:
        p = p_text(metrics[block].get("p_chi2")) if key == "lt4cm" else ""
        outcomes.add_row(label, proportion_text(metrics[block][key]), p)
    logrank = p_text(metrics["ltp_free_survival"].get("logrank_p"))
    outcomes.add_row("LTP-free survival, log-rank <4 vs >=4 cm", "", logrank)
    quality = run.get("data_quality")
    style = {"passed": "green", "failed": "red"}.get((quality or {}).get("status"), "yellow")
    fresh = freshness_line(quality)
    fresh_style = {"passed": "green", "failed": "red"}.get(
        ((quality or {}).get("freshness") or {}).get("status"), "yellow"
    )
    parts += [
        Text(),
        outcomes,
        Text(),
        *([Text(fresh, style=fresh_style)] if fresh else []),
        Text(data_quality_line(quality), style=style),
        Text(f"warehouse  {result['warehouse']}"),
        *(Text(f"output     {p}") for p in result["published"]),
        Text(f"finished in {seconds:.1f} s", style="bold"),
    ]
    return Group(*parts)


STARTED = re.compile(r"stage started: (?P<stage>.+)")
FINISHED = re.compile(r"stage finished: (?P<stage>.+) in (?P<seconds>[\d.]+) s")
READ = re.compile(r"\S+: read (?P<rows>\d+) rows")
ACCOUNTED = re.compile(r"\S+: read \d+ = loaded (?P<loaded>\d+) \+ quarantined (?P<held>\d+)")
DBT_COUNTS = re.compile(r"dbt build: (?P<counts>\d+ nodes, .*)")
SYMBOLS = {"done": ("✓", "green"), "failed": ("✗", "red"), "interrupted": ("✗", "red")}


@dataclass
class _Stage:
    name: str
    began: float
    ended: float | None = None
    state: str = "running"
    files: int = 0
    rows: int = 0
    loaded: int = 0
    held: int = 0
    progress: tuple[int, int] | None = None  # nodes done, of total (the dbt build)
    notes: list[str] = field(default_factory=list)
    spinner: Spinner = field(default_factory=lambda: Spinner("dots", style="cyan"))

    def end(self, state: str, seconds: float | None = None) -> None:
        self.state = state
        self.ended = time.monotonic() if seconds is None else self.began + seconds

    def detail(self) -> str:
        counts = []
        if self.files:
            counts.append(f"{self.files} files, {self.rows:,} rows read")
        if self.loaded or self.held:
            counts.append(f"{self.loaded:,} loaded, {self.held:,} quarantined")
        if self.progress and self.state != "done":
            counts.append(f"{self.progress[0]}/{self.progress[1]} nodes")
        return "; ".join(counts + self.notes)


class StageList(logging.Handler):
    """The live list of a run's stages, fed by the run's own log records.

    The flow logs `stage started: X` and `stage finished: X in N s` through Prefect's run
    logger, and row counts where it has them; while the run works this handler stands in for
    Prefect's console handler: it turns those records into the list, and prints warnings and
    errors above it as single lines (a failed stage says why on stderr once the run unwinds).
    """

    def __init__(self, launched: float, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console
        self.stages = [_Stage("start-up", launched)]
        self._lock = threading.Lock()  # the list is drawn from the display's refresh thread

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        with self._lock:
            self._follow(message, getattr(record, "task_name", None))
        run_log = record.name.startswith(("prefect.task_runs", "prefect.flow_runs"))
        if record.levelno >= logging.ERROR and run_log:
            return  # the run's failure: shown on its stage, and as the command's error line
        if record.levelno >= logging.WARNING:
            line = message.strip().splitlines()[0] if message.strip() else record.levelname
            style = "red" if record.levelno >= logging.ERROR else "yellow"
            self.console.print(Text(f"{record.levelname.lower()}: {line}", style=style))

    def _follow(self, message: str, task: str | None) -> None:
        if started := STARTED.fullmatch(message):
            self._start(started["stage"])
        elif finished := FINISHED.fullmatch(message):
            self._stage(finished["stage"]).end("done", float(finished["seconds"]))
        elif task and message.startswith("Finished in state "):
            stage = self._stage(task)
            if stage.state == "running" and "Completed(" in message:
                stage.end("done")
            elif "Failed(" in message or "Crashed(" in message:
                stage.end("failed")
        elif read := READ.fullmatch(message):
            stage = self._stage(task)
            stage.files, stage.rows = stage.files + 1, stage.rows + int(read["rows"])
        elif accounted := ACCOUNTED.fullmatch(message):
            stage = self._stage(task)
            stage.loaded += int(accounted["loaded"])
            stage.held += int(accounted["held"])
        elif counts := DBT_COUNTS.fullmatch(message):
            self._stage(task).notes.append(counts["counts"])
        elif message.startswith("dbt build: full refresh"):
            self._stage(task).notes.append("full refresh")
        elif message.startswith("nothing new"):
            self.stages[-1].notes.append("nothing new")

    def on_progress(self, stage: str, done: int, total: int) -> None:
        """A progress step of a running stage (flows.progress): nodes done of total."""
        with self._lock:
            self._stage(stage).progress = (done, total)

    def _start(self, name: str) -> _Stage:
        """A stage begins (again, when retried); start-up ends with the first."""
        now = time.monotonic()
        self.stages = [s for s in self.stages if s.name != name]
        if self.stages[0].state == "running":
            self.stages[0].end("done")
        self.stages.append(_Stage(name, now))
        return self.stages[-1]

    def _stage(self, name: str | None) -> _Stage:
        """The named stage; a task that logs no start of its own (it is short) began when the
        stage before it ended."""
        if name is None:
            return self.stages[-1]
        for stage in self.stages:
            if stage.name == name:
                return stage
        stage = self._start(name)
        stage.began = self.stages[-2].ended or stage.began
        return stage

    def end(self, state: str) -> None:
        """The run unwound: whatever was still running failed or was interrupted."""
        with self._lock:
            for stage in self.stages:
                if stage.state == "running":
                    stage.end(state)
                elif stage.state == "failed" and state == "interrupted":
                    stage.state = state  # Prefect saw it fail: the stop is why

    def __rich__(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(width=1)
        table.add_column()
        table.add_column(min_width=len("running"))
        table.add_column(justify="right", min_width=len("100.0 s"))
        table.add_column(style="dim")
        now = time.monotonic()
        with self._lock:
            for stage in self.stages:
                symbol, style = SYMBOLS.get(stage.state, (stage.spinner, "cyan"))
                seconds = (stage.ended or now) - stage.began
                table.add_row(
                    symbol if isinstance(symbol, Spinner) else Text(symbol, style=style),
                    stage.name,
                    Text(stage.state, style=style),
                    f"{seconds:.1f} s",
                    stage.detail(),
                )
        return table

    @contextlib.contextmanager
    def following_the_run(self):
        """Stand in for the root logger's console handlers (Prefect's) while the flow runs:
        their lines would break the live list."""
        root = logging.getLogger()
        consoles = [
            h
            for h in root.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        ]
        for handler in consoles:
            root.removeHandler(handler)
        root.addHandler(self)
        try:
            with progress.listening(self.on_progress):
                yield
        finally:
            root.removeHandler(self)
            for handler in consoles:
                root.addHandler(handler)
