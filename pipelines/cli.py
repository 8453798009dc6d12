"""The `quorum-sms` command: parse, call, print, exit code.

Each command module registers its own subcommands (`register(subparsers)` in
`pipelines/commands/*.py`, and the simulator's in `pipelines/simulator/cli.py`), so this module
stays a thin dispatcher. Errors are typed (`pipelines.errors`) and become one
paragraph on stderr plus the error's exit code; SIGINT and SIGTERM become `Interrupted`
(`pipelines.interrupts`) and exit 130 and 143.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from pipelines.errors import QuorumSmsError
from pipelines.interrupts import handled, interruption
from pipelines.logs import install_one_line_dlt_errors
from pipelines.private_files import set_owner_only_umask
from pipelines.process_memory import skip_unused_imports, tune_process_memory


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every area's subcommands."""
    from pipelines.commands import ops, settings, sync, warehouse
    from pipelines.simulator import cli as simulator_cli

    parser = argparse.ArgumentParser(
        prog="quorum-sms",
        description="Quorum SendSMS data into DuckDB, with delivery and conversion metrics.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sync.register(subparsers)
    simulator_cli.register(subparsers)
    warehouse.register(subparsers)
    ops.register(subparsers)
    settings.register(subparsers)
    return parser


def print_error(error: BaseException) -> None:
    """Print an error as one wrapped paragraph on stderr."""
    text = " ".join(str(error).split())
    # paths stay whole (a copied path must work): no breaks at their hyphens
    wrapped = textwrap.fill(
        f"error: {text}", width=100, break_on_hyphens=False, break_long_words=False
    )
    print(wrapped, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    # before pyarrow is imported (by the command modules): the Arrow pool is chosen then
    tune_process_memory()
    skip_unused_imports()
    # before anything is created: the warehouse and dlt's folder hold personal data
    set_owner_only_umask()
    install_one_line_dlt_errors()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with handled():
            try:
                code: int = args.handler(args)
            except (QuorumSmsError, KeyboardInterrupt) as error:
                return report_error(error)
    except KeyboardInterrupt as error:  # a signal that landed while the error was printed
        return report_error(error)
    return code


def report_error(error: QuorumSmsError | KeyboardInterrupt) -> int:
    """Print the error (or the interruption) and return its exit code.

    An error raised because a signal arrived (DuckDB cancels its query on SIGINT and raises
    its own error) is the interruption, not a failure of its own.
    """
    stopped = interruption(error)
    if stopped is not None:
        print(
            f"interrupted ({stopped.signal_name}): nothing after the last completed load "
            "was kept, and the SQL models are as the last complete build left them",
            file=sys.stderr,
            flush=True,
        )
        return stopped.exit_code
    assert isinstance(error, QuorumSmsError)
    print_error(error)
    return error.exit_code

if __name__ == "__main__":
    sys.exit(main())
