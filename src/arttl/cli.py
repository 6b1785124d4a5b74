"""Entry-point plumbing: user errors print one line and exit 2, with no stack trace."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from arttl.errors import ConfigError, TrainingDiverged

USER_ERROR_EXIT = 2
DIVERGED_EXIT = 3


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Hydra task function so a ConfigError ends the process cleanly with its message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
        except TrainingDiverged as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(DIVERGED_EXIT)

    return wrapper
