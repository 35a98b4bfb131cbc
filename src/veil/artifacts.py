"""Atomic artifact writing: every run's folder appears complete or not at all.

A run writes into a hidden temporary sibling of ``OUT`` and renames it into
place at the end (:class:`ArtifactDir`); single files go through
:func:`atomic_write_text` / :func:`atomic_write_bytes`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON (indented, UTF-8) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success rename it into place.

    Works for files and folders. On any exception the temp path is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink(missing_ok=True)


def package_versions(names: tuple[str, ...] = (
    "veil", "torch", "opacus", "dp-accounting", "peft", "transformers",
    "sentence-transformers", "presidio-analyzer", "flwr", "numpy", "scikit-learn",
)) -> dict[str, str]:
    """Installed versions of the packages a run depends on."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def run_record(
    config: dict[str, Any], seed: int | None, timings: dict[str, float]
) -> dict[str, Any]:
    """The content of ``run.json``: config, versions, seed, timings, platform."""
    return {
        "config": config,
        "seed": seed,
        "timings_s": timings,
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "argv": sys.argv[1:2],  # the sub-command only: arguments may name sensitive paths
        "created_unix": time.time(),
    }


class Timer:
    """Collects named wall-clock phases: ``with timer('train'): ...``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def finalize(path: Path, writer: Callable[[Path], None]) -> None:
    """Run ``writer(tmpdir)`` and move the folder to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.mkdir(parents=True)
        writer(tmp)
