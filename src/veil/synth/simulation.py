"""Run the Flower app on one machine: Flower's simulation engine, or an in-process grid.

``engine="flower"`` (default) runs the ServerApp and the ClientApp in
``flwr.simulation.run_simulation`` — Flower 1.42's simulation runtime, whose
only backend is Ray (``flwr[simulation]`` pins ``ray==2.55.1``); each site
is one virtual SuperNode. ``engine="inprocess"`` runs the *same* app objects
through :class:`LocalGrid`, which hands every message to the ClientApp in this
process after a round trip through Flower's protobuf serialisation (what the
network would carry) — a fast path for tests and machines without Ray.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from veil.synth.site import SiteSpec

Engine = Literal["flower", "inprocess"]


class LocalGrid:
    """An in-process ``Grid``: each node is a ClientApp call with its own Context."""

    def __init__(self, client_app: Any, n_nodes: int) -> None:
        from flwr.app import Context, RecordDict

        self.app = client_app
        self.contexts = {
            1000 + i: Context(run_id=1, node_id=1000 + i,
                              node_config={"partition-id": i, "num-partitions": n_nodes},
                              state=RecordDict(), run_config={})
            for i in range(n_nodes)
        }

    def get_node_ids(self) -> Iterable[int]:
        """The virtual nodes' ids."""
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Any], *,
                         timeout: float | None = None) -> Iterable[Any]:
        """Deliver each message (serialised and parsed back) and collect the replies."""
        from flwr.app import Error, Message
        from flwr.common.serde import message_from_proto, message_to_proto

        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            wire = message_from_proto(message_to_proto(msg))
            context = self.contexts[msg.metadata.dst_node_id]
            try:
                reply = self.app(wire, context)
            except Exception as err:  # a failing site: an error reply, as Flower sends
                reply = Message(Error(code=2, reason=f"{type(err).__name__}: {err}"),
                                reply_to=wire)
            replies.append(message_from_proto(message_to_proto(reply)))
        return replies


def _quiet_flower() -> None:
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from veil.progress import is_quiet

    # a failing site's traceback (no data in it) is logged at ERROR; --quiet hides it too
    logging.getLogger("flwr").setLevel(logging.CRITICAL if is_quiet() else logging.ERROR)


def run_app(server_app: Any, client_app: Any, n_sites: int, *, engine: Engine = "flower",
            cpus_per_site: float = 1.0) -> None:
    """Run ``server_app`` against ``n_sites`` virtual sites running ``client_app``.

    Args:
        server_app: a ``flwr.serverapp.ServerApp``.
        client_app: a ``flwr.clientapp.ClientApp``.
        n_sites: number of virtual SuperNodes (one per site).
        engine: ``"flower"`` (Flower simulation runtime, Ray) or ``"inprocess"``.
        cpus_per_site: CPU cores reserved per ClientApp in the Ray backend.
    """
    if engine == "inprocess":
        from flwr.app import Context, RecordDict
        from flwr.common.constant import SUPERLINK_NODE_ID
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.task_id, TaskIdentity.run_id = 1, 1  # what Flower's runtimes set
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        grid = LocalGrid(client_app, n_sites)
        server_app(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                 run_config={}))
        return
    if engine != "flower":
        raise ValueError(f"unknown engine {engine!r}")
    import warnings

    from flwr.simulation import run_simulation

    _quiet_flower()
    cpus = max(1, os.cpu_count() or 1)
    backend = {"client_resources": {"num_cpus": cpus_per_site, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "include_dashboard": False,
                             "logging_level": logging.ERROR, "log_to_driver": False}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_simulation(server_app=server_app, client_app=client_app, num_supernodes=n_sites,
                       backend_config=backend)  # type: ignore[arg-type]


def simulate(cfg: Any, sites: Sequence[SiteSpec], out: Path, *, engine: Engine = "flower",
             capture_dir: Path | None = None, notes: list[str] | None = None,
             extra: dict[str, Any] | None = None) -> None:
    """Run a whole synthesis with ``sites`` as simulated SuperNodes; outputs go to ``out``."""
    from dataclasses import replace

    from veil.synth.app import build_client_app, build_server_app

    cfg = replace(cfg, min_sites=len(sites))
    server = build_server_app(cfg, out, capture_dir=capture_dir, notes=notes, extra=extra)
    client = build_client_app(dict(enumerate(sites)))
    run_app(server, client, len(sites), engine=engine)
