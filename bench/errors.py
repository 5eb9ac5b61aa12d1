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
