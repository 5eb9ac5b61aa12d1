"""Errors a user can fix: the CLI prints their message as one line and exits with status 2."""

from __future__ import annotations


class UserInputError(Exception):
    """Bad input from the user (a config, a path, an argument). The message is the whole report."""


class ConfigError(UserInputError):
    """The config file is missing, not YAML, or fails validation."""


class RunFolderError(UserInputError):
    """A run folder's file is damaged or hand-edited past what the stages can read.

    The message names the file and, for JSON Lines files, the line, so the user can repair or
    remove exactly that line instead of reading a traceback.
    """


class ArgumentError(UserInputError):
    """A bad value of one argument, named as the caller wrote it.

    The library raises it with the Python parameter's name and its command-line option; the
    message names the option (``--only: ...``), what the `bench` command prints, until the
    Python API claims it (`as_parameter`), after which it names the parameter of the function
    called (``run(only=...): ...``). So one check serves both surfaces, and neither names the
    other's spelling.
    """

    def __init__(self, parameter: str, problem: str, *, option: str | None = None) -> None:
        self.parameter = parameter
        self.option = option or "--" + parameter.replace("_", "-")
        self.problem = problem
        self.function: str | None = None
        super().__init__(problem)

    def as_parameter(self, function: str) -> ArgumentError:
        """This error as the Python API reports it: naming ``function(parameter=...)``."""
        self.function = function
        return self

    def __str__(self) -> str:
        if self.function is not None:
            return f"{self.function}({self.parameter}=...): {self.problem}"
        return f"{self.option}: {self.problem}"
