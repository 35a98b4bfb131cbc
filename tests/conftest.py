"""Shared fixtures: real-data location, offline environment, a private VEIL_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets, or skip (it is absent on a user's machine)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets not present")
    return SHARED_DATASETS


# Converted/built models are shared by all tests and xdist workers (a file lock guards
# the one-time build, checksums guard its integrity); ledgers are per test.
os.environ.setdefault("VEIL_MODEL_CACHE", str(Path.home() / ".cache" / "veil" / "models"))


@pytest.fixture(autouse=True)
def _isolated_veil_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own VEIL_HOME (so its own ledger); the model cache stays shared."""
    monkeypatch.setenv("VEIL_HOME", str(tmp_path_factory.mktemp("veil_home")))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one intra-op thread (and do not fight over shared cores).

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
