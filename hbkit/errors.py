"""Errors a user can cause. Every message names the problem and the fix."""
from __future__ import annotations


class HbkitError(Exception):
    """Base class for all errors raised by hbkit on bad input or bad state."""


class DataError(HbkitError, ValueError):
    """A data file is missing, corrupt, or holds unusable content."""


class ConfigError(HbkitError, ValueError):
    """A configuration value (or notebook parameter) is invalid."""


class UnknownLanguageError(ConfigError):
    """A language code is not known to hbkit or not present in a dataset."""


class UnknownModelError(ConfigError):
    """A model name is neither a known preset, a local directory, nor a hub id."""


class TrainingDivergedError(HbkitError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
