"""Entry-point plumbing shared by every command (``python -m arttl.<cmd>`` and ``arttl-<cmd>``).

- A user mistake prints one line, ``error: …``, and exits 2 with no stack trace: an unknown
  group choice (before Hydra starts), an override Hydra cannot apply (a typo in a key: its close
  matches; a bare value: the ``key=`` it likely lacks), a ConfigError or a ``???`` value left
  unset in the task. A run folder the failed command left with nothing of its own is removed.
- A diverged training run exits 3; a failure of arttl itself exits 1.
- Console and log (conf/hydra/job_logging/arttl.yaml): stdout shows arttl's own messages, stderr
  everyone's warnings, and ``<run folder>/<command>.log`` everything, Lightning's device and
  checkpoint notes included. Third-party adverts and deprecations are dropped, by origin and text
  (``NOISY_WARNINGS``, ``NoiseFilter``); every other warning stays.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from rich.console import Console

from arttl.config import CONF_DIR
from arttl.errors import ConfigError, TrainingDiverged, choice_error

FAILURE_EXIT = 1
USER_ERROR_EXIT = 2
DIVERGED_EXIT = 3

log = logging.getLogger("arttl")

# (message regex, category, module regex): third-party warnings a user can do nothing about.
NOISY_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # Lightning's CSVLogger finds the run folder Hydra made (.hydra/, <command>.log) "not empty" on
    # every fresh run; a resumed run's metrics history is kept by arttl (checkpointing.keep_history).
    (
        r"Experiment logs directory .* exists and is not empty",
        UserWarning,
        r"lightning\.fabric\.loggers\.csv_logs",
    ),
    # torch deprecates LeafSpec, which Lightning's own _pytree helper still uses (Lightning's to fix).
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    ),
    # Lightning's model summary cannot size bf16 weights and says it counts 32 bits instead: a
    # remark on the summary's "MB" line, on every bf16 run.
    (
        r"Precision bf16-\w+ is not supported by the model summary",
        UserWarning,
        r"lightning\.pytorch\.utilities\.model_summary",
    ),
    # Small collections have fewer batches per epoch than the step-logging interval; arttl's
    # metrics (val/*, test/*, train/*_epoch) are logged per epoch, so nothing is missing.
    (
        r"The number of training batches \(\d+\) is smaller than the logging interval",
        UserWarning,
        r"lightning\.pytorch\.loops\.fit_loop",
    ),
    # Off-the-shelf and partial fine-tuning keep their frozen layers in eval mode on purpose
    # (models/transfer.py: frozen BatchNorm statistics must not move).
    (
        r"Found \d+ module\(s\) in eval mode at the start of training",
        UserWarning,
        r"lightning\.pytorch\.loops\.fit_loop",
    ),
    # arttl tests the best checkpoint on a callback-free fp32 Trainer (training.run.build_tester):
    # it loads the weights only, on purpose. Only that Trainer lacks arttl's RNGState callback, so
    # the same warning on a resumed fit (a callback really missing) still shows.
    (
        r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint .*'RNGState'",
        UserWarning,
        r"lightning\.pytorch\.trainer\.call",
    ),
)


def fail(message: object, code: int = USER_ERROR_EXIT) -> NoReturn:
    """The one way a command ends on an error: ``error: <message>`` on stderr, then exit."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Hydra task function: quiet third-party noise, route warnings to the run's log, and
    end a ConfigError or a ``???`` value read unset (exit 2), or a diverged run (exit 3), with one
    line and no stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with quiet_warnings():
            try:
                try:
                    return fn(*args, **kwargs)
                except InstantiationException as err:  # a _target_ that refused its arguments
                    if isinstance(err.__cause__, ConfigError | MissingMandatoryValue):
                        raise err.__cause__ from None
                    raise
            except (ConfigError, MissingMandatoryValue) as err:
                message = str(err)
                if isinstance(err, MissingMandatoryValue):
                    from arttl.config_schema import missing_value

                    message = missing_value(err.full_key or str(err.key))
                if not _remove_unused_run_dir_quietly():
                    log.error("%s", message, extra={"file_only": True})
                fail(message, USER_ERROR_EXIT)
            except TrainingDiverged as err:
                log.error("%s", err, extra={"file_only": True})
                fail(err, DIVERGED_EXIT)

    return wrapper


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """Drop ``NOISY_WARNINGS``; send every other warning through logging (console and log file)."""
    with warnings.catch_warnings():
        for message, category, module in NOISY_WARNINGS:
            warnings.filterwarnings("ignore", message, category, module)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)


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
        if key == "experiment" and not arg.startswith(("+", "~")):
            raise _experiment_without_plus(value, options)
        for option in filter(None, value.strip("[]").split(",")):  # a sweep, or [a,b]: several
            if option not in options and option != "null":
                raise choice_error(key, option, options, f"The presets are conf/{key}/*.yaml.")


def _experiment_without_plus(value: str, options: list[str]) -> ConfigError:
    if value in options:
        return ConfigError(
            f"experiment={value}: a preset is added with a plus, +experiment={value}."
        )
    return ConfigError(
        f"experiment={value!r} is no preset (conf/experiment/: {', '.join(options)}). To name your "
        f"own study, use name={value} (outputs/{value}/, checkpoints/{value}/); to start from a "
        "preset, +experiment=<preset>."
    )


def run_entry_point(main: Callable[[], Any]) -> None:
    """Check group choices on the command line, then hand over to the Hydra entry point.

    Hydra's own composition errors (an override it cannot apply, a malformed one) take the same
    path as arttl's: ``error: …``, exit 2. HYDRA_FULL_ERROR=1 keeps Hydra's full report.
    """
    from hydra.errors import CompactHydraException

    try:
        check_group_choices(sys.argv[1:])
    except ConfigError as err:
        fail(err, USER_ERROR_EXIT)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them
    try:
        main()
    except CompactHydraException as err:
        fail(hydra_error(err, _command(main), sys.argv[1:]), USER_ERROR_EXIT)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def hydra_error(err: Exception, command: str, argv: Sequence[str]) -> str:
    """Hydra's message for a command line it cannot apply, made actionable where arttl can: a
    typo in an existing key (Hydra would suggest adding it with ``+``) and a bare value."""
    from hydra.errors import OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    cause = err.__cause__
    if isinstance(err, OverrideParseException) and "=" not in err.override:
        return _not_an_override(err.override, command, argv)
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and str(err).startswith(
        "Could not override '"
    ):
        return _no_such_key(str(err), cause)
    detail = f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else ""
    return f"{err}{detail}"


def _no_such_key(message: str, cause: Any) -> str:
    """``trainer.max_epoch=3``: the keys at that level of the composed config that it is close to
    (``cause``, OmegaConf's error, holds the node the key was looked up in)."""
    from arttl.config_schema import close_keys

    # Hydra's message ends "To append to your config use +<the override as typed>"
    line = message.rpartition(" use +")[2].strip() or cause.full_key
    typed, key, name = line.partition("=")[0], cause.full_key, str(cause.key)
    known = list(cause.parent_node) if isinstance(cause.parent_node, DictConfig) else []
    prefix = key[: -len(name)] if name and key.endswith(name) else ""
    rest = typed.removeprefix(key) if typed.startswith(key) else ""  # traner.max_epochs: .max_…
    close = [f"{prefix}{match}{rest}" for match in close_keys(name, map(str, known))]
    fix = f"(a new key needs a leading +: +{line})"
    if close:
        return f"{line}: no such key; did you mean {', '.join(close)}? {fix}"
    return f"{line}: no such key {fix}"


def _not_an_override(value: str, command: str, argv: Sequence[str]) -> str:
    """A bare value: name the ``key=`` it most likely lacks, a required (``???``) key of the
    command's config not given yet; with several (predict: ckpt, input), ``ckpt`` for a ``.ckpt``."""
    conf = CONF_DIR / f"{command}.yaml"
    cfg = OmegaConf.load(conf) if command and conf.is_file() else OmegaConf.create()
    given = {arg.lstrip("+~").partition("=")[0] for arg in argv if "=" in arg}
    required = [k for k in cfg if OmegaConf.is_missing(cfg, k) and k not in given]
    if len(required) > 1:
        required = [k for k in required if (k == "ckpt") == value.endswith(".ckpt")]
    if len(required) == 1:
        return f"{value!r} is not a key=value override; did you mean {required[0]}={value}?"
    return f"{value!r} is not a key=value override; settings are given as key=value"


def _command(main: Callable[..., Any]) -> str:
    """``evaluate`` for ``arttl.evaluate``'s entry point (``python -m`` runs it as __main__)."""
    module = main.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else ""
    return module.rpartition(".")[2]


def output_console(stderr: bool = False) -> Console:
    """Where a command prints tables and summaries. A pipe or log file gets 160 columns, not
    rich's 80, which fold labels and file names mid-word; long lines are never broken (soft wrap),
    so a printed path can be copied whole."""
    out = Console(stderr=stderr, soft_wrap=True)
    return out if out.is_terminal else Console(stderr=stderr, soft_wrap=True, width=160)


def display_path(path: str | Path) -> str:
    """A path as a person types it: relative to the launch folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


# -- the run folder of a command that failed before writing anything ------------------------------
HYDRA_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}


def remove_unused_run_dir() -> bool:
    """Remove the Hydra run folder of this job when it holds only Hydra's bookkeeping (``.hydra/``)
    and the job's log, with the folders above it that only held it (inside the launch folder)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir).resolve()
    cwd = Path(hc.runtime.cwd).resolve()
    log_name, subdir = f"{hc.job.name}.log", hc.output_subdir
    if not run_dir.is_dir() or run_dir == cwd or run_dir in cwd.parents:
        return False
    entries = {p.name: p for p in run_dir.iterdir()}
    if not set(entries) <= {log_name, subdir} or (
        log_name in entries and entries[log_name].is_dir()
    ):
        return False
    hydra_dir = entries.get(subdir) if subdir else None
    if hydra_dir is not None and (
        not hydra_dir.is_dir() or not {p.name for p in hydra_dir.iterdir()} <= HYDRA_FILES
    ):
        return False
    _close_file_handlers(run_dir)
    if hydra_dir is not None:
        for name in HYDRA_FILES:
            (hydra_dir / name).unlink(missing_ok=True)
        hydra_dir.rmdir()
    (run_dir / log_name).unlink(missing_ok=True)
    run_dir.rmdir()
    parent = run_dir.parent
    while parent != cwd and cwd in parent.parents:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent
    return True


def _remove_unused_run_dir_quietly() -> bool:
    try:
        return remove_unused_run_dir()
    except OSError:  # the error message matters more than the tidying
        return False


def log_also_into(folder: Path) -> None:
    """From now on, this job's log records also go to ``folder/<command>.log`` (appended, in the
    job log's format): a resumed run continues in its earlier folder, and so does its log."""
    root = logging.getLogger()
    job = next((h for h in root.handlers if isinstance(h, logging.FileHandler)), None)
    if job is None or Path(job.baseFilename).parent.resolve() == folder.resolve():
        return
    handler = logging.FileHandler(folder / Path(job.baseFilename).name, encoding="utf-8")
    handler.setFormatter(job.formatter)
    handler.filters = list(job.filters)
    root.addHandler(handler)


def _close_file_handlers(folder: Path) -> None:
    for handler in logging.getLogger().handlers[:]:
        name = getattr(handler, "baseFilename", None)
        if name and Path(name).resolve().parent == folder:
            logging.getLogger().removeHandler(handler)
            handler.close()


# -- logging: conf/hydra/job_logging/arttl.yaml -----------------------------------------------------
_CONSOLE_INFO = ("arttl", "hydra", "__main__")  # INFO shown on the console; the rest: log file only


class ConsoleHandler(logging.StreamHandler):
    """A stream handler on whatever ``sys.stdout`` / ``sys.stderr`` is when a record is written
    (rich's live progress display and pytest replace them), not the one there was at set-up."""

    def __init__(self, stream: str = "stdout") -> None:
        self.stream_name = stream
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ / setStream: ignored
        pass


class ConsoleFilter(logging.Filter):
    """``out``: INFO from arttl (and Hydra's sweep lines); ``err``: every warning and error.
    Third-party INFO (Lightning's device, seed and checkpoint-restore notes) and records logged
    with ``extra={"file_only": True}`` go only to the log file."""

    def __init__(self, stream: str = "out") -> None:
        super().__init__()
        self.stream = stream

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        if self.stream == "err":
            return record.levelno >= logging.WARNING
        return record.levelno < logging.WARNING and record.name.split(".")[0] in _CONSOLE_INFO


class NoiseFilter(logging.Filter):
    """Lightning's advert on every Trainer ("💡 Tip: … litlogger"): neither console nor log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("lightning") and str(record.msg).startswith("💡 Tip"))


# "<file>:<line>: [<Category>: ]<message>[\n  <source line>]" (warnings.formatwarning, Lightning's)
_WARNING = re.compile(r"^.+?:\d+: (?:(?P<category>\w*(?:Warning|Error)): )?(?P<message>.*)$", re.S)


def warning_text(formatted: str) -> str:
    """A captured warning's message without the file and line of the code that raised it."""
    match = _WARNING.match(formatted.rstrip("\n"))
    if not match:
        return formatted.strip()
    lines = match["message"].split("\n")
    if match["category"] and len(lines) > 1 and lines[-1].startswith("  "):
        lines = lines[:-1]  # the source line warnings.formatwarning appends
    return "\n".join(lines).strip()


class ConsoleFormatter(logging.Formatter):
    """INFO as it is; ``warning: …`` / ``error: …`` for the rest, like arttl's own errors."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.name == "py.warnings":
            text = warning_text(text)
        if record.levelno >= logging.WARNING:
            text = f"{'warning' if record.levelno < logging.ERROR else 'error'}: {text}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text
