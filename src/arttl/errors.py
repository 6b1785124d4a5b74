"""User-facing errors: raised for bad input and printed without a stack trace by the entry points."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A config key, value or input path the user must fix; the message says how."""


class TrainingDiverged(RuntimeError):
    """The loss became non-finite; the run stopped and its last good checkpoint is kept."""


def choice_error(key: str, value: object, choices: Iterable[str], hint: str = "") -> ConfigError:
    """Build the one message format we use for a value outside its choices (with close matches)."""
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(value), choices, n=3)
    msg = f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}"
    if close:
        msg += f" (did you mean {', '.join(close)}?)"
    if hint:
        msg += f". {hint}"
    return ConfigError(msg)
