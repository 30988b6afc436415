"""Extract folders: which exist, their content hashes, and which of them are new.

A folder named like a date that is not one is an error; other folders are ignored with a warning.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

EXTRACT_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RegistryInputError(RuntimeError):
    """A file-level problem: the run must stop and publish nothing."""


@dataclass
class Extract:
    name: str
    path: Path
    content_hash: str


def folder_hash(folder: Path) -> str:
    """Content hash of an extract folder: file names and bytes, in name order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def discover_extracts(root: Path, warnings: list[str] | None = None) -> list[Extract]:
    """Extract folders under root, oldest first. A folder named like a date that is not one
    is an error; any other folder is listed in `warnings` as ignored."""
    if not root.is_dir():
        raise RegistryInputError(f"{root}: extracts root does not exist")
    folders = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        if not EXTRACT_FOLDER.match(path.name):
            if warnings is not None and not path.name.startswith(("_", ".")):
                warnings.append(f"{path}: not an extract folder (YYYY-MM-DD), ignored")
            continue
        try:
            date.fromisoformat(path.name)
        except ValueError:
            raise RegistryInputError(
                f"{path}: extract folder named like a date that does not exist"
            ) from None
        folders.append(path)
    if not folders:
        raise RegistryInputError(f"{root}: extracts root holds no extract folder (YYYY-MM-DD)")
    return [Extract(p.name, p, folder_hash(p)) for p in folders]
