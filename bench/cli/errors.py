"""The one place where a user error becomes `error: ...` on stderr and exit status 2.

Library modules raise typed exceptions (bench.errors.UserInputError and its subclasses, and the
GGUF tools' GGUFFileError / ConversionError); only the commands in this package print them, so
the library can be called from Python without anything printing or exiting.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from bench.errors import UserInputError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_USER_ERROR = 2


def say_error(message: str) -> None:
    """One line on stderr: the whole report of a user error."""
    typer.echo(f"error: {message}", err=True)


def fail(message: str) -> typer.Exit:
    """Say the error and return the exit (status 2) for the caller to raise."""
    say_error(message)
    return typer.Exit(EXIT_USER_ERROR)


def reports_user_errors(*domain: type[Exception]) -> Callable[[F], F]:
    """Decorate a command so UserInputError (and the `domain` errors given) exit with status 2.

    On the command itself rather than only in `main`, so a typer app that registers the command
    (the tests' CliRunner apps do) answers the same as `bench` does.
    """
    caught = (UserInputError, *domain)

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except caught as exc:
                raise fail(str(exc)) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def exit_on_user_error(exc: UserInputError) -> None:
    """For `main`: a user error raised outside any command (while typer parses, say)."""
    say_error(str(exc))
    sys.exit(EXIT_USER_ERROR)
