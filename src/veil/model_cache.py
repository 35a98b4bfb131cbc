"""Build-once model folders: a checksummed, locked, atomic cache.

Some registry models are not shipped as a plain Hugging Face folder: SmolLM2
comes as a Q4_1 GGUF file, the tiny test models are built in code, mpnet comes
as a split zip. :func:`ensure_built` builds such a folder once, in the model
cache, and guarantees that

* two processes never build the same folder at the same time (a
  :class:`filelock.FileLock` beside the folder; the second process waits and
  then uses the first one's result);
* a folder appears complete or not at all (built in a temporary sibling,
  renamed into place);
* a corrupted or stale folder is detected and rebuilt: ``veil-conversion.json``
  records the SHA-256 and size of every source file and of every written file,
  plus a recipe string naming how it was built.

Verification on later use is cheap: sizes always, SHA-256 of the written files
once per process (memoised by size and modification time).

The builders themselves are in :mod:`veil.gguf_convert`. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from veil.progress import info

MANIFEST = "veil-conversion.json"
_FORMAT = 1
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def _write_json(path: Path, obj: Any) -> None:
    """Plain write: files go into a temp folder whose rename is the atomic step."""
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, memoised per process by (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    cached = _HASH_MEMO.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    _HASH_MEMO[key] = digest.hexdigest()
    return _HASH_MEMO[key]


def _describe(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def read_manifest(target: Path) -> dict[str, Any] | None:
    """The parsed ``veil-conversion.json`` of ``target``, or None if absent/unreadable."""
    try:
        data = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_valid(
    target: Path, sources: Sequence[Path] = (), recipe: str = "", *, hashes: bool = True
) -> bool:
    """Whether ``target`` is a complete build of ``sources`` by ``recipe``.

    Args:
        target: the built folder.
        sources: input files the build read; their size and SHA-256 must match the manifest.
        recipe: a string naming the build procedure and its version.
        hashes: also compare SHA-256 (memoised per process); False checks sizes only.
    """
    manifest = read_manifest(target)
    if manifest is None or manifest.get("format") != _FORMAT or manifest.get("recipe") != recipe:
        return False
    recorded_sources = manifest.get("sources", {})
    if sorted(recorded_sources) != sorted(p.name for p in sources):
        return False
    checks = [(p, recorded_sources[p.name]) for p in sources]
    checks += [(target / rel, entry) for rel, entry in manifest.get("files", {}).items()]
    for path, entry in checks:
        try:
            if path.stat().st_size != entry["size"]:
                return False
            if hashes and sha256_file(path) != entry["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return bool(manifest.get("files"))


def _write_manifest(tmp: Path, sources: Sequence[Path], recipe: str) -> None:
    files = sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != MANIFEST)
    _write_json(
        tmp / MANIFEST,
        {
            "format": _FORMAT,
            "recipe": recipe,
            "created_unix": time.time(),
            "sources": {p.name: _describe(p) for p in sources},
            "files": {p.relative_to(tmp).as_posix(): _describe(p) for p in files},
        },
    )


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an old ``target`` is moved aside first, then deleted."""
    old: Path | None = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_built(
    target: Path,
    build: Callable[[Path], None],
    *,
    sources: Sequence[Path] = (),
    recipe: str,
    what: str = "model",
) -> Path:
    """Return ``target``, building it with ``build(tmp_dir)`` first if missing or invalid.

    ``build`` must write the whole folder into the (already created) directory it
    is given; the manifest is added afterwards and the folder renamed into place.
    Concurrent callers serialise on ``<target>.lock``; whoever comes second finds a
    valid folder and returns without building.

    Args:
        target: where the built folder lives.
        build: writes the folder's content into the directory it is passed.
        sources: files (not folders) the build reads, checksummed into the manifest.
        recipe: build procedure and version; a different recipe forces a rebuild.
        what: a short label for progress messages.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        info(f"waiting for another process to finish building {what} in {target}")
        lock.acquire()
    try:
        if is_valid(target, sources, recipe):
            return target
        for stale in target.parent.glob(f".{target.name}.*-*"):  # left by a killed build
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            info(f"rebuilding {what}: {target} is incomplete, stale or corrupted")
        else:
            info(f"building {what} once into {target}")
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
        try:
            build(tmp)
            _write_manifest(tmp, sources, recipe)
            _swap_into_place(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target
    finally:
        lock.release()
