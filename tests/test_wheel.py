"""The built wheel runs a night on its own: installed in a fresh venv outside the checkout, with
its package folder read-only, from an empty folder (synth, run, docs).

The dbt project and the expectation suites travel inside the wheel; dbt's target/ and logs/ go
beside the registry's store, never into the package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from zipfile import ZipFile

import pytest

from cryoreg import paper
from cryoreg.config import dbt_state_dir, store_path

from conftest import REPO

pytestmark = pytest.mark.xdist_group("wheel")

SOURCES = ("pyproject.toml", "README.md", "flows", "dbt_project", "expectations")


def _can_build_without_isolation() -> bool:
    """setuptools builds wheels itself from 70.1 on, older ones need the `wheel` package."""
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of this checkout's sources, built from a copy so that setuptools' build/ and
    egg-info never land in the checkout (nor a stale build/ in the wheel).

    Without build isolation when this venv can (`make install` gives it a setuptools that
    can); else pip fetches the build backend from the configured index.
    """
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "target", "logs")
            shutil.copytree(source, src / name, ignore=ignore)
        else:
            shutil.copy2(source, src / name)
    # what a developer's dbt run leaves in the project: it must not ship
    for leftover in ("target/partial_parse.msgpack", "logs/dbt.log"):
        (src / "dbt_project" / leftover).parent.mkdir()
        (src / "dbt_project" / leftover).write_text("stale")
    dist = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
    if _can_build_without_isolation():
        command.insert(5, "--no-build-isolation")
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    [wheel] = dist.glob("cryoreg-*.whl")
    return wheel


def test_the_wheel_ships_the_project_and_runs_a_night_read_only(tmp_path):
    wheel = build_wheel(tmp_path)
    with ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    modules = {p.relative_to(REPO / "flows").as_posix() for p in REPO.glob("flows/cryoreg/**/*.py")}
    suites = {f"cryoreg/expectations/{p.name}" for p in (REPO / "expectations").glob("*.yml")}
    assert modules <= shipped, f"modules missing from the wheel: {sorted(modules - shipped)}"
    assert suites <= shipped, f"suites missing from the wheel: {sorted(suites - shipped)}"
    assert "cryoreg/dbt_project/dbt_project.yml" in shipped
    assert not [
        n
        for n in shipped
        if n.startswith(("cryoreg/dbt_project/target/", "cryoreg/dbt_project/logs/"))
    ]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = (
        venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )
    # The dependencies come from this project's venv. A plain path line in a .pth file only
    # appends that folder to sys.path, after the new venv's own site-packages: the .pth files
    # inside it (the editable install's pointer to the checkout among them) are not run, so
    # `import cryoreg` finds the installed wheel, not the checkout.
    dependencies = [p for p in sys.path if p.endswith("site-packages")]
    (site / "_project_dependencies.pth").write_text("".join(f"{p}\n" for p in dependencies))
    # as a user runs it: not the checkout's code, dbt's state where cryoreg puts it
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "DBT_TARGET_PATH", "DBT_LOG_PATH")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    work = tmp_path / "night"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    where = run(
        str(python),
        "-c",
        "import cryoreg; from cryoreg import config; "
        "print(cryoreg.__file__); print(config.project_folder('dbt_project'))",
    ).stdout.split()
    package = Path(where[0]).parent
    assert package.is_relative_to(venv), f"cryoreg imported from {where[0]}"
    assert Path(where[1]) == package / "dbt_project"

    before = _read_only(package)
    try:
        run(str(venv / "bin" / "cryoreg"), "synth", "extracts", "--profile", "paper")
        run(str(venv / "bin" / "cryoreg"), "run")
        run(str(venv / "bin" / "cryoreg"), "docs")
    finally:
        for path in (package, *package.rglob("*")):
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    # root ignores permission bits: that nothing was written is checked by the listing too
    written = sorted(set(package.rglob("*")) - set(before))
    assert not written, f"the run wrote into the installed package: {written[:3]}"

    metrics = json.loads((work / "out" / "metrics.json").read_text())
    ts = metrics["technical_success"]["all"]
    assert (ts["k"], ts["n"]) == (paper.TECHNICAL_SUCCESS.k, paper.TECHNICAL_SUCCESS.n)
    warehouse = work / "warehouse" / "cryoreg.duckdb"
    store = store_path(warehouse)
    assert warehouse.is_file() and store.is_file()
    # dbt's state beside the store, for the next night's partial parse
    assert (dbt_state_dir(store) / "target" / "partial_parse.msgpack").is_file()
    assert (work / "out" / "dbt_docs" / "index.html").is_file()


def _read_only(folder: Path) -> list[Path]:
    """Take every write permission off folder and what it holds; returns what it holds."""
    held = sorted(folder.rglob("*"))
    for path in (*held, folder):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return held
