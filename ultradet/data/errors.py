"""Errors of the data layer caused by the user's dataset or arguments (see :mod:`ultradet.errors`)."""

from __future__ import annotations

from ultradet.errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset file is malformed, or a requested fold holds no video; the message names the
    file, key or fold."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset file or folder does not exist; the message names the path."""
