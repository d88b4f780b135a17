"""Command-line interface: `edgeskel <command>`. Errors a user caused print one line, exit 2."""

from __future__ import annotations

import importlib
import pkgutil
import sys

from edgeskel.cli.app import app
from edgeskel.errors import EdgeskelError


def _load_commands() -> None:
    """Import every `edgeskel/cli/*_cmd.py` so its commands register on `app`."""
    import edgeskel.cli as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)):
        if mod.endswith("_cmd"):
            importlib.import_module(f"edgeskel.cli.{mod}")


def main(argv: list[str] | None = None) -> int:
    _load_commands()
    from typer.main import get_command

    from edgeskel.cli.app import tidy

    try:
        rv = tidy(get_command(app)).main(args=argv, prog_name="edgeskel", standalone_mode=False)
    except EdgeskelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exit paths
        return int(exc.code or 0)
    except Exception as exc:  # click usage errors
        from pydantic import ValidationError
        from typer import _click as click

        if isinstance(exc, ValidationError):  # a command-line value a settings model refused (e.g. --epochs -1)
            from edgeskel.config_errors import format_validation_error

            print(f"error: {format_validation_error('command line', exc, what='option value')}", file=sys.stderr)
            return 2

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        # typer's vendored click has no Exit/Abort in some versions: look them up, never assume
        exit_cls, abort_cls = getattr(click.exceptions, "Exit", None), getattr(click.exceptions, "Abort", None)
        if exit_cls is not None and isinstance(exc, exit_cls):
            return exc.exit_code
        if abort_cls is not None and isinstance(exc, abort_cls):
            return 1
        raise
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
