"""What both command lines, `vla-data` and `vla-train`, share: errors as one line, camera
lists, and old option names refused with the new one."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from common.errors import UserError, error_line


def one_line_errors(fn: Callable) -> Callable:
    """`fn` with a user's error (common.errors.error_line) as one line and a non-zero exit.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, OSError) as exc:
            code = getattr(exc, "exit_code", 1)
            if code != 1:  # not an error: a stop on request, with a code scripts act on
                click.echo(error_line(exc), err=True)
                raise click.exceptions.Exit(code) from None
            raise click.ClickException(error_line(exc)) from None

    return wrapper


def camera_list(text: str | None) -> tuple[str, ...]:
    """`--cameras head, left_wrist` -> ("head", "left_wrist"); nothing given -> ()."""
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()


def renamed(old: str, new: str) -> Callable:
    """A hidden `old` option that stops the command with a hint naming `new`.

    The 0.x releases rename options outright; this is how a user's old command line learns
    the new name instead of reading "no such option".
    """

    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            raise click.UsageError(f"{old} is now {new}", ctx)

    return click.option(
        old, f"_renamed_{old.lstrip('-')}", hidden=True, expose_value=False, is_eager=True,
        callback=refuse, help=f"Renamed {new}.",
    )  # fmt: skip
