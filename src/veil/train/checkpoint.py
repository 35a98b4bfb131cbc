"""Epoch checkpoints of a training run, for ``veil train --resume``.

A checkpoint holds the trainable weights, the optimizer, the DP engine's state
(accountant history, Poisson-sampling and noise generator states), the global
torch RNG (dropout), the epoch and the validation curve. It lives in a hidden
sibling of the output folder, ``.OUT.checkpoints/``, because the output folder
itself only appears, complete, at the end of the run.

Checkpoints are private: they hold the noise generator's state (with it,
anyone could subtract the noise from the released weights) and weights not
yet accounted in the ledger. They are deleted once the run's output is in
place; a ``--secure`` run never stores its noise state.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import torch

from veil.artifacts import atomic_write_bytes
from veil.errors import BadInput

FORMAT = "veil-train-checkpoint/1"


def checkpoint_dir(out: Path) -> Path:
    """Where the checkpoints of a run writing ``out`` live."""
    out = Path(out)
    return out.parent / f".{out.name}.checkpoints"


class Checkpointer:
    """Save, find and remove the latest epoch checkpoint of one run.

    Args:
        out: the run's output folder.
        config_fingerprint: :meth:`TrainConfig.fingerprint` of the run.
        data_fingerprint: SHA-256 of the training data file.
    """

    def __init__(self, out: Path, config_fingerprint: str, data_fingerprint: str) -> None:
        self.dir = checkpoint_dir(out)
        self.path = self.dir / "last.pt"
        self.config_fingerprint = config_fingerprint
        self.data_fingerprint = data_fingerprint

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (a crash mid-write keeps the previous checkpoint)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "config": self.config_fingerprint,
                    "data": self.data_fingerprint, "state": state}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none.

        Raises:
            BadInput: the checkpoint is unreadable, or belongs to different data
                or options (resuming it would not give the run that was asked for).
        """
        if not self.path.is_file():
            return None
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a torn or foreign file
            raise BadInput(f"unreadable checkpoint ({type(exc).__name__}); delete it to start "
                           "over", path=self.path) from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise BadInput("not a veil training checkpoint", path=self.path)
        if blob["data"] != self.data_fingerprint:
            raise BadInput("checkpoint was made on different data; delete it to start over",
                           path=self.path)
        if blob["config"] != self.config_fingerprint:
            raise BadInput("checkpoint was made with different training options; rerun with "
                           "the same options or delete it to start over", path=self.path)
        return dict(blob["state"])

    def clear(self) -> None:
        """Delete the checkpoints (after a successful release)."""
        shutil.rmtree(self.dir, ignore_errors=True)
