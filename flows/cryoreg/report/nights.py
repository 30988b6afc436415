"""out/nights/: every published night's outputs under its own dated folder, and their index.

A night's folder is staged with the run's other outputs and moved into out/nights/ by the same
publish, so a failed night leaves the history as it was. Its files are hard links to the
night's outputs (a copy where links are not possible): out/ replaces files, never rewrites
them, so the kept night never changes and costs no space until the next night replaces the
latest outputs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryoreg.report import trends
from cryoreg.report.html import _environment

NIGHTS = "nights"
# what stays the latest night's only (the history has one of each, under out/)
NOT_KEPT = {NIGHTS, "trends.html"}


def night_dir(staged_out: Path, night: dict) -> Path:
    """Where a night's kept outputs are staged: staged_out/nights/<date>-<run id first 8>."""
    return staged_out / NIGHTS / trends.folder(night)


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def keep_night(staged_out: Path, night: dict) -> Path:
    """Stage the night's outputs (report, metrics.json, figures, Data Docs) in its own folder;
    a file already there (the report, whose links lead two levels up) is kept."""
    kept = night_dir(staged_out, night)
    kept.mkdir(parents=True, exist_ok=True)
    for item in sorted(staged_out.iterdir()):
        target = kept / item.name
        if item.name in NOT_KEPT or target.exists():
            continue
        if item.is_dir():
            shutil.copytree(item, target, copy_function=_link)
        else:
            _link(str(item), str(target))
    return kept


def write_index(history: list[dict], out: Path, staged_out: Path) -> Path:
    """staged_out/nights/index.html: every kept night (its folder is under out/nights/ or staged
    now), newest first, with its outcomes and data-quality status, linking its report."""
    staged = staged_out / NIGHTS
    kept = [
        n
        for n in reversed(history)
        if (staged / trends.folder(n)).is_dir() or (out / NIGHTS / trends.folder(n)).is_dir()
    ]
    page = (
        _environment()
        .get_template("nights.html")
        .render(
            nights=kept,
            outcomes=trends.KEY_OUTCOMES,
            outcome=trends.outcome,
            folder=trends.folder,
            counts=trends.check_text,
        )
    )
    staged.mkdir(parents=True, exist_ok=True)
    path = staged / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
