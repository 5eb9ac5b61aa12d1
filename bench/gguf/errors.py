"""Exceptions of the GGUF tools; messages are one line naming the file or key at fault."""

from __future__ import annotations


class GGUFFileError(Exception):
    """A GGUF file is missing, truncated, corrupt or not GGUF at all."""


class ConversionError(ValueError):
    """A source checkpoint or a conversion request cannot be handled (bad key, shape, type)."""
