"""Messages between the server and the sites: build, send, collect, measure, capture.

The content of every message is a Flower ``RecordDict``. Server to site:
``config`` (the public run config as JSON, the site's noise plan, a run tag,
the round), plus ``arrays`` (global LoRA adapters, train) or ``candidates``
(synthetic texts and their code indices, vote). Site to server: ``site`` (name
and role), ``release`` (noisy counts / noisy votes / DP-SGD step count) and
``arrays`` (DP-trained adapters). Nothing else leaves a site.

:class:`CapturingGrid` records every message in both directions, serialised
exactly as Flower puts it on the wire (protobuf of the ``RecordDict``), for the
test that checks no raw text and no exact count ever travels.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from veil.synth.budget import NoisePlan
from veil.synth.config import SynthConfig


class GridLike(Protocol):
    """The part of ``flwr.serverapp.Grid`` the server uses."""

    def get_node_ids(self) -> Iterable[int]: ...

    def send_and_receive(self, messages: Iterable[Any], *,
                         timeout: float | None = None) -> Iterable[Any]: ...


def server_content(cfg: SynthConfig, plan: NoisePlan | None, run_tag: str, *, round_: int = 0,
                   steps: int = 0, adapter: Mapping[str, np.ndarray] | None = None,
                   candidates: tuple[Sequence[str], Sequence[int]] | None = None) -> Any:
    """The ``RecordDict`` of a server-to-site message."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    records: dict[str, Any] = {"config": ConfigRecord({
        "synth": cfg.to_json(), "plan": json.dumps(plan.to_dict() if plan else None),
        "run-tag": run_tag, "round": int(round_), "steps": int(steps)})}
    if adapter is not None:
        records["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(v))
                                         for k, v in adapter.items()})
    if candidates is not None:
        texts, codes = candidates
        records["candidates"] = ConfigRecord({"texts": list(texts),
                                              "codes": [int(c) for c in codes]})
    return RecordDict(records)


@dataclass(frozen=True)
class Incoming:
    """A server message as a site reads it."""

    cfg: SynthConfig
    plan: NoisePlan | None
    run_tag: str
    round_: int
    steps: int
    adapter: dict[str, np.ndarray] | None
    texts: list[str] | None
    codes: list[int] | None


def read_server_content(content: Any) -> Incoming:
    """Parse a server-to-site ``RecordDict``."""
    conf = content["config"]
    plan_data = json.loads(str(conf["plan"]))
    adapter = None
    if "arrays" in content:
        adapter = {k: arr.numpy() for k, arr in content["arrays"].items()}
    texts = codes = None
    if "candidates" in content:
        texts = [str(t) for t in content["candidates"]["texts"]]
        codes = [int(c) for c in content["candidates"]["codes"]]
    return Incoming(SynthConfig.from_json(str(conf["synth"])),
                    NoisePlan.from_dict(plan_data) if plan_data else None,
                    str(conf["run-tag"]), int(conf["round"]), int(conf["steps"]),  # type: ignore[arg-type]
                    adapter, texts, codes)


def site_content(*, site: tuple[str, str] | None = None,
                 values: Sequence[float] | np.ndarray | None = None,
                 key: str = "", adapter: Mapping[str, np.ndarray] | None = None,
                 steps: int | None = None) -> Any:
    """The ``RecordDict`` of a site's reply (only DP releases and its name/role)."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

    records: dict[str, Any] = {}
    if site is not None:
        records["site"] = ConfigRecord({"name": site[0], "role": site[1]})
    release: dict[str, Any] = {}
    if values is not None:
        release[key] = [float(v) for v in values]
    if steps is not None:
        release["steps"] = int(steps)
    if release:
        records["release"] = MetricRecord(release)
    if adapter is not None:
        records["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(v, dtype=np.float32))
                                         for k, v in adapter.items()})
    return RecordDict(records)


def content_bytes(content: Any) -> int:
    """Payload size of a ``RecordDict`` (Flower's ``count_bytes`` over its records)."""
    return int(sum(record.count_bytes() for record in content.values()))


@dataclass
class Traffic:
    """Bytes sent per site and phase, both directions."""

    down: dict[str, dict[str, int]] = field(default_factory=dict)
    up: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, direction: str, site: str, phase: str, n: int) -> None:
        """Count ``n`` bytes for ``site`` in ``phase`` (``direction``: down or up)."""
        table = self.down if direction == "down" else self.up
        table.setdefault(site, {}).setdefault(phase, 0)
        table[site][phase] += int(n)

    def rename(self, old: str, new: str) -> None:
        """Move the counts filed under ``old`` (e.g. a node id) to ``new`` (the site name)."""
        for table in (self.down, self.up):
            if old in table:
                merged = table.setdefault(new, {})
                for phase, n in table.pop(old).items():
                    merged[phase] = merged.get(phase, 0) + n

    def to_dict(self) -> dict[str, Any]:
        """Per site: bytes received from the server and sent to it, by phase and total."""
        sites = sorted(set(self.down) | set(self.up))
        return {s: {"server_to_site": self.down.get(s, {}), "site_to_server": self.up.get(s, {}),
                    "sent_by_site_total": sum(self.up.get(s, {}).values()),
                    "received_by_site_total": sum(self.down.get(s, {}).values())}
                for s in sites}


@dataclass
class Reply:
    """One site's answer in a phase: content, or an error reason."""

    node_id: int
    content: Any = None
    error: str | None = None


def exchange(grid: GridLike, contents: Mapping[int, Any], message_type: str, group: str,
             timeout: float) -> dict[int, Reply]:
    """Send one message per node and collect the replies (missing ones become errors)."""
    from flwr.app import Message

    messages = {nid: Message(content, nid, message_type, group_id=group)
                for nid, content in contents.items()}
    replies = list(grid.send_and_receive(list(messages.values()), timeout=timeout))
    by_id = {m.metadata.message_id: nid for nid, m in messages.items()}
    out = {nid: Reply(nid, error="no reply before the phase timeout") for nid in messages}
    for reply in replies:
        nid = by_id.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
        if nid not in out:
            continue
        if reply.has_error():
            out[nid] = Reply(nid, error=short_reason(str(reply.error.reason)))
        else:
            out[nid] = Reply(nid, content=reply.content)
    return out


def short_reason(reason: str) -> str:
    """The last meaningful line of a (possibly traceback-laden) error reason, ≤ 200 chars."""
    lines = [ln.strip() for ln in reason.replace("\\n", "\n").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Message:" in ln:
            ln = ln.split("Message:", 1)[1].strip() or ln
            break
    else:
        ln = lines[-1] if lines else "unknown error"
    return ln.rstrip("'\">")[:200]


class CapturingGrid:
    """Wraps a grid and writes every message's wire bytes to ``folder``.

    Files are ``NNNN-down-<type>-<node>.bin`` (server to site) and
    ``NNNN-up-<type>-<node>.bin`` (site to server): the protobuf serialisation
    of the message's ``RecordDict``, exactly what Flower transmits as content.
    """

    def __init__(self, grid: GridLike, folder: Path) -> None:
        self.grid = grid
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._n = 0
        self._lock = threading.Lock()

    def get_node_ids(self) -> Iterable[int]:
        """The wrapped grid's node ids."""
        return self.grid.get_node_ids()

    def _save(self, direction: str, msg: Any, node: int) -> None:
        from flwr.common.serde import recorddict_to_proto

        if msg.has_error():
            data = str(msg.error.reason).encode()
        else:
            data = recorddict_to_proto(msg.content).SerializeToString()
        kind = msg.metadata.message_type.replace(".", "_")
        with self._lock:
            self._n += 1
            name = f"{self._n:04d}-{direction}-{kind}-{node}.bin"
        (self.folder / name).write_bytes(data)

    def send_and_receive(self, messages: Iterable[Any], *,
                         timeout: float | None = None) -> Iterable[Any]:
        """Send and receive through the wrapped grid, saving both directions."""
        messages = list(messages)
        for m in messages:
            self._save("down", m, m.metadata.dst_node_id)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        for r in replies:
            self._save("up", r, r.metadata.src_node_id)
        return replies


def wait_for_nodes(grid: GridLike, n: int, timeout: float) -> list[int]:
    """Poll until at least ``n`` nodes are connected (or ``timeout`` s); return their ids."""
    end = time.monotonic() + timeout
    while True:
        ids = sorted(int(i) for i in grid.get_node_ids())
        if len(ids) >= n or time.monotonic() > end:
            return ids
        time.sleep(0.2)
