"""The Flower app: a ServerApp (the coordinator) and a ClientApp (one per site).

The same two objects run in Flower's simulation engine (:mod:`veil.synth.simulation`)
and in deployment mode (``flower-superlink`` + one ``flower-supernode`` per
site + ``flwr run``; see :mod:`veil.synth.flower_project`). Deployment reads
each site's data path and role from its node config (``data-path``, ``role``,
``site-name``, ``ledger``, ``max-epsilon``) and the run's settings from the run
config; the simulation passes a site table and a config object instead.

Message types: ``query.hello``, ``query.profile``, ``train`` (default action),
``query.vote``. Replies carry only DP releases (see :mod:`veil.synth.transport`).
Errors raised at a site are sent back as a short reason without any data: a
:class:`~veil.errors.VeilError` keeps its (PHI-free) message, anything else
only its type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from veil.errors import VeilError
from veil.synth.config import SynthConfig
from veil.synth.site import SiteFailure, SiteSpec, site_profile, site_train, site_vote
from veil.synth.transport import read_server_content, site_content

SERVER_KEYS = ("out", "capture-dir", "notes")
"""Run-config keys read by the ServerApp only (not :class:`SynthConfig` fields)."""


def _sanitised(phase: str, fn: Callable[[], Message]) -> Message:
    try:
        return fn()
    except VeilError:
        raise
    except Exception as err:  # never forward messages that might quote data
        raise SiteFailure(f"{type(err).__name__} during {phase}") from None


def build_client_app(sites: Mapping[int, SiteSpec] | None = None) -> ClientApp:
    """The site's ClientApp.

    Args:
        sites: simulation only: the site of each ``partition-id``. None (deployment):
            each site is described by its node config.
    """
    app = ClientApp()

    def spec_of(context: Context) -> SiteSpec:
        if sites is not None:
            return sites[int(context.node_config["partition-id"])]
        return SiteSpec.from_node_config(context.node_config)

    @app.query("hello")
    def hello(msg: Message, context: Context) -> Message:
        spec = spec_of(context)
        if spec.fail_at == "hello":
            raise SiteFailure(f"site {spec.name}: simulated failure at hello (fail-at hook)")
        return Message(site_content(site=(spec.name, spec.role)), reply_to=msg)

    @app.query("profile")
    def profile(msg: Message, context: Context) -> Message:
        def run() -> Message:
            spec, inc = spec_of(context), read_server_content(msg.content)
            assert inc.plan is not None
            noisy = site_profile(spec, inc.cfg, inc.plan, inc.run_tag)
            return Message(site_content(values=noisy, key="noisy-counts"), reply_to=msg)
        return _sanitised("profile", run)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        def run() -> Message:
            spec, inc = spec_of(context), read_server_content(msg.content)
            assert inc.plan is not None and inc.adapter is not None
            adapter, steps = site_train(spec, inc.cfg, inc.plan, inc.adapter, inc.round_,
                                        inc.steps, inc.run_tag)
            return Message(site_content(adapter=adapter, steps=steps), reply_to=msg)
        return _sanitised("train", run)

    @app.query("vote")
    def vote(msg: Message, context: Context) -> Message:
        def run() -> Message:
            spec, inc = spec_of(context), read_server_content(msg.content)
            assert inc.plan is not None and inc.texts is not None and inc.codes is not None
            noisy = site_vote(spec, inc.cfg, inc.plan, inc.texts, inc.codes, inc.run_tag)
            return Message(site_content(values=noisy, key="noisy-votes"), reply_to=msg)
        return _sanitised("vote", run)

    return app


def config_from_run_config(run_config: Mapping[str, Any]) -> SynthConfig:
    """The :class:`SynthConfig` in a Flower run config (server-only keys ignored)."""
    return SynthConfig.from_mapping({k: v for k, v in run_config.items() if k not in SERVER_KEYS})


def build_server_app(cfg: SynthConfig | None = None, out: Path | None = None, *,
                     capture_dir: Path | None = None, notes: list[str] | None = None,
                     extra: dict[str, Any] | None = None) -> ServerApp:
    """The coordinator's ServerApp.

    Args:
        cfg: simulation: the run config. None (deployment): read from the run config.
        out: simulation: the output folder. None: the run config's ``out``.
        capture_dir: save every message there (tests; also run config ``capture-dir``).
        notes: remarks for the report.
        extra: more fields for ``run.json``.
    """
    from veil.synth.server import run_server

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        rc = dict(context.run_config)
        config = cfg if cfg is not None else config_from_run_config(rc)
        target = out if out is not None else Path(str(rc.get("out", "synth-out")))
        capture = capture_dir or (Path(str(rc["capture-dir"])) if rc.get("capture-dir") else None)
        remarks = list(notes or []) + ([str(rc["notes"])] if rc.get("notes") else [])
        run_server(grid, config, target, capture_dir=capture, notes=remarks, extra=extra)

    return app


client_app = build_client_app()
"""Deployment ClientApp (``veil.synth.app:client_app``): sites from node config."""

server_app = build_server_app()
"""Deployment ServerApp (``veil.synth.app:server_app``): settings from the run config."""
