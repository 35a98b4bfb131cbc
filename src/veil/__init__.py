"""veil: privacy-preserving language AI on sensitive text.

Three pipelines share one privacy core:

* ``privatize`` — token-level metric local DP rewriting (STAMP, polar mechanism);
* ``train`` — DP-SGD fine-tuning of LoRA adapters (record-level DP);
* ``synth`` — resource-adaptive federated DP synthetic text (record-level DP per site).

Nothing heavy (torch, transformers) is imported here; import submodules as needed.
"""

from __future__ import annotations

from veil._env import ensure_offline

ensure_offline()

__version__ = "0.1.0"

__all__ = ["__version__"]
