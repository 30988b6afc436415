"""cryoreg: nightly registry warehouse and outcome analysis for liver cryoablation."""

__version__ = "0.1.0"


def code_version() -> str:
    """The package version plus the git commit when run from a checkout (metrics.json records
    it; `cryoreg --version` prints it)."""
    import subprocess

    from cryoreg.config import PROJECT_ROOT

    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__
