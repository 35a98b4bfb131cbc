"""Process environment: offline mode and veil's home directory."""

from __future__ import annotations

import os
from pathlib import Path

_OFFLINE_VARS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def ensure_offline() -> None:
    """Force Hugging Face libraries offline; veil never downloads weights or data."""
    for key, value in _OFFLINE_VARS.items():
        os.environ.setdefault(key, value)
    os.environ["HF_HUB_OFFLINE"] = "1"


def veil_home() -> Path:
    """Return ``$VEIL_HOME`` (default ``~/.cache/veil``), created if missing."""
    home = Path(os.environ.get("VEIL_HOME", Path.home() / ".cache" / "veil")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
