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
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from rich.console import Console
from rich.logging import RichHandler

from irpass import __version__
from irpass.cli._markup import esc
from irpass.errors import IrpassError, UsageError
from irpass.outputs import handle_sigterm

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


class _Parser(argparse.ArgumentParser):
    """argparse reporting mistakes as a UsageError (one ``error:`` line and a ``hint:``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see '{self.prog} --help' for the arguments")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every discovered subcommand."""
    parser = _Parser(
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


def _quiet_runtime(debug: bool) -> None:
    """ONNX Runtime logs to stderr in colour on its own; its message reaches our error instead."""
    if debug:
        return
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # fatal only


def _print_error(exc: IrpassError) -> int:
    # Messages quote shapes like [batch, 64] and extras like irpass[torch]: not markup.
    err_console.print(f"[bold red]error:[/] {esc(exc.message)}", soft_wrap=True)
    if exc.hint:
        err_console.print(f"[yellow]hint:[/] {esc(exc.hint)}", soft_wrap=True)
    return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``irpass`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _print_error(exc)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _setup_logging(args.debug, args.verbose)
    _quiet_runtime(args.debug)
    try:
        # Library warnings (numpy overflow in a metric, ...) are kept for --debug: printed
        # before an error line they only hide it.
        with handle_sigterm(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always" if args.debug else "default")
            try:
                return int(args._run(args) or 0)
            finally:
                for warning in caught:
                    logging.getLogger("irpass.warnings").debug(
                        "%s: %s", warning.category.__name__, warning.message
                    )
    except IrpassError as exc:
        if args.debug:
            raise
        return _print_error(exc)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
