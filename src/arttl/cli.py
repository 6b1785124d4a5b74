"""Entry-point plumbing: user errors print one line and exit 2, with no stack trace."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from arttl.config import CONF_DIR
from arttl.errors import ConfigError, TrainingDiverged, choice_error

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


def check_group_choices(argv: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Refuse ``group=option`` overrides naming no file in ``conf/<group>/``, with close matches.

    Hydra rejects them too, but inside ``@hydra.main`` and with its option list only.
    """
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        group = conf_dir / key
        if not sep or "." in key or "/" in key or not group.is_dir() or "(" in value:
            continue  # a key=value, a nested group, or a sweep function such as choice(...)
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for option in value.split(","):  # a multirun list
            if option not in options and option != "null":
                raise choice_error(key, option, options, f"The presets are conf/{key}/*.yaml.")


def run_entry_point(main: Callable[[], Any]) -> None:
    """Check group choices on the command line, then hand over to the Hydra entry point."""
    try:
        check_group_choices(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    main()
