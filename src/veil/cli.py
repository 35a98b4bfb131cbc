"""The ``veil`` command line: thin — parse, build config, call a pipeline, print a summary.

Errors a user can fix are printed as one line (no traceback) with exit code 2;
a privacy-budget refusal exits with code 3. Raw input text is never printed
unless ``--log-text`` is given.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import typer

from veil.errors import VeilError
from veil.progress import console

app = typer.Typer(
    name="veil",
    help="Privacy-preserving language AI on sensitive text.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print veil's version and exit."),
) -> None:
    """veil: rewrite, train on and synthesise sensitive text with formal privacy guarantees."""
    if version:
        from veil import __version__

        console.print(f"veil {__version__}")
        raise typer.Exit()


def _register_pipelines() -> None:
    """Attach each pipeline's commands (their modules import nothing heavy at top level)."""
    from veil import core_commands

    core_commands.register(app)
    for module in ("veil.privatize.commands", "veil.train.commands", "veil.synth.commands"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name == module:
                continue
            raise
        mod.register(app)


_register_pipelines()


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by ``main`` and the tests)."""
    try:
        result = app(args=list(argv) if argv is not None else None, standalone_mode=False,
                     prog_name="veil")
    except VeilError as err:
        # one line, never wrapped (scripts grep it); no traceback for user mistakes
        message = " ".join(str(err).split())
        sys.stderr.write(f"veil: error: {message}\n")
        return err.exit_code
    except click.exceptions.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return int(err.exit_code)
    except click.exceptions.Abort:
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
