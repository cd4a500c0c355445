"""The click classes every `snapsync` command uses, and the one-line error they share.

Every error a user can cause (a bad file, flag, profile or frame) is one line on stderr and exit
code 2; a traceback means a bug in snapsync.
"""

from __future__ import annotations

from typing import Any

import click

from snapsync.errors import SnapsyncError

EXIT_USER_ERROR = 2


class UserError(click.ClickException):
    exit_code = EXIT_USER_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"snapsync: error: {self.message}", err=True)


class Command(click.Command):
    """Every subcommand: `--help` shows each option's variable and default, and a usage error
    (a bad or missing flag) is one line and exit 2, as every other user error (no usage block).
    A missing option that a variable can also give names the variable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {
            "show_default": True,
            **(kwargs.get("context_settings") or {}),
        }
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option) and param.envvar:
                param.show_envvar = True

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.MissingParameter as exc:
            param = exc.param
            if isinstance(param, click.Option) and isinstance(param.envvar, str):
                name = max(param.opts, key=len)
                raise UserError(f"missing {name}: pass the flag or set {param.envvar}") from None
            raise UserError(exc.format_message()) from None
        except click.UsageError as exc:
            raise UserError(exc.format_message()) from None


class Group(click.Group):
    """Turns SnapsyncError into one line and exit 2, for every subcommand."""

    command_class = Command
    group_class = type  # subgroups (`env`) are Groups too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SnapsyncError as exc:
            raise UserError(str(exc)) from None


def note(message: str) -> None:
    click.echo(message, err=True)
