"""The ``irpass`` command: subcommands are modules of this package, discovered at start-up.

A subcommand module defines ``COMMAND``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. User errors (:class:`irpass.errors.IrpassError`) are printed as one line
plus a hint, with exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from irpass import __version__
from irpass.errors import IrpassError

__all__ = ["build_parser", "console", "err_console", "main"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _command_modules() -> list[ModuleType]:
    import irpass.cli as package

    modules = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(module, "COMMAND"):
            modules.append(module)
    return sorted(modules, key=lambda m: m.COMMAND)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="irpass",
        description="Compiler-style graph optimizer for ONNX models headed to edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"irpass {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="show info logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        command_parser = sub.add_parser(module.COMMAND, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def _setup_logging(debug: bool, verbose: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=debug)],
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``irpass`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _setup_logging(args.debug, args.verbose)
    try:
        return int(args._run(args) or 0)
    except IrpassError as exc:
        if args.debug:
            raise
        # Messages quote shapes like [batch, 64] and extras like irpass[torch]: not markup.
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
