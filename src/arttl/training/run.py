"""One training run from a composed config: validate, prepare if needed, fit, test, write results."""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

import arttl
from arttl.atomic import atomic_path
from arttl.cli import display_path, log_also_into
from arttl.config_schema import check_train_config, resolved
from arttl.data.build import store_provenance
from arttl.data.config import prepare_from_config
from arttl.data.datamodule import check_store
from arttl.data.features import weights_digest
from arttl.data.store import (
    SPLITS,
    H5ImageDataset,
    read_class_names,
    read_task_classes,
    split_file,
    task_columns,
)
from arttl.data.summary import print_store_summary
from arttl.data.tasks import challenge_name, task_list
from arttl.models.classifier import ArtClassifier, metric_record
from arttl.training.checkpointing import (
    AtomicCheckpointIO,
    ResumePlan,
    RNGState,
    check_same_classes,
    checkpoint_epoch,
    continue_in,
    keep_history,
    merge_history,
    plan_resume,
)
from arttl.training.distributed import ddp_job
from arttl.training.precision import PrecisionChoice, resolve_precision
from arttl.training.provenance import (
    check_resume,
    new_run_id,
    read_provenance,
    run_identity,
    split_members,
)

__all__ = ["build_model", "build_trainer", "recorded_config", "run_training"]

log = logging.getLogger(__name__)


def ensure_store(cfg: DictConfig) -> dict[str, Any]:
    """The store this config asks for: reused only when its provenance matches the source on
    disk and the settings (else rebuilt, saying why, or refused when it is another source's)."""
    store_dir = Path(cfg.store.dir)
    summary = prepare_from_config(cfg)
    if summary.get("reused") and not summary.get("unverified"):
        log.info(f"store {store_dir} is current (same source files and settings)")
    else:
        print_store_summary(summary)
    return check_store(store_dir, cfg.dataset.challenge)


def precision_choice(cfg: DictConfig) -> PrecisionChoice:
    """trainer.precision and channels_last for the device this run trains on (warns once for
    bf16 forced where it is emulated); see arttl.training.precision and bench/README.md B6."""
    return resolve_precision(
        cfg.trainer.get("precision"),
        cfg.trainer.get("accelerator"),
        channels_last=cfg.get("channels_last"),
    )


def model_tasks(cfg: DictConfig, store_dir: str | Path) -> dict[str, list[str]] | None:
    """The tasks (and their classes) this network learns: ``tasks`` of the store's, else all of a
    multi-task store's; None for a one-task store (``tasks`` may then name its challenge only).
    A task the store lacks is a ConfigError naming the ones it has."""
    available = read_task_classes(split_file(store_dir, "train"))
    wanted = [str(t) for t in cfg.get("tasks") or available or []]
    if available is None and wanted in ([], task_list(cfg.dataset.challenge)):
        return None
    task_columns(available, wanted, f"tasks={wanted}: store.dir={str(store_dir)!r}")
    return {t: (available or {})[t] for t in wanted}


def build_model(
    cfg: DictConfig,
    class_names: list[str],
    store_dir: str,
    choice: PrecisionChoice | None = None,
    tasks: dict[str, list[str]] | None = None,
) -> ArtClassifier:
    """The network of ``cfg``: ``class_names`` for one head, or ``tasks`` (``model_tasks``: task
    -> class names) for one head per task, weighted by ``task_weights``."""
    choice = choice or precision_choice(cfg)
    weights = OmegaConf.to_container(cfg.task_weights) if cfg.get("task_weights") else None
    return ArtClassifier(
        backbone=cfg.backbone.name,
        num_classes=len(class_names),
        class_names=class_names,
        mode=cfg.mode.name,
        weights=None if cfg.backbone.weights is None else str(cfg.backbone.weights),
        image_size=cfg.backbone.image_size,
        partial_fraction=cfg.mode.partial_fraction,
        optimizer=instantiate(cfg.mode.optimizer),
        scheduler=instantiate(cfg.mode.scheduler) if cfg.mode.get("scheduler") else None,
        channels_last=choice.channels_last,
        experiment=cfg.experiment,
        dataset=cfg.dataset.name,
        challenge=challenge_name(list(tasks) if tasks else cfg.dataset.challenge),
        store=str(store_dir),
        tasks=tasks,
        task_weights=weights,  # type: ignore[arg-type]
    )


def _lightning_defaults(trainer: DictConfig) -> DictConfig:
    """``conf/trainer`` without its null keys: null means Lightning's own default there
    (e.g. ``trainer.num_nodes=null``), which passing None would not give."""
    keys = OmegaConf.to_container(trainer, resolve=True)
    return OmegaConf.create({k: v for k, v in keys.items() if v is not None})


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """``conf/callbacks`` and the mode's own (``mode.callbacks``, e.g. gradual's head-first
    unfreezing), each instantiated (null drops one), and arttl's RNG state."""
    nodes = [*cfg.callbacks.values(), *(cfg.mode.get("callbacks") or {}).values()]
    callbacks = [instantiate(c) for c in nodes if c is not None]
    callbacks.append(RNGState())  # exact resume depends on it: no setting, so not in YAML
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Logger] | bool:
    """``conf/logger``: a dict of loggers by name (logger=[csv,tensorboard] combines presets,
    logger.<name>=null drops one); False (no logging) when none is left or ``~logger``."""
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    return loggers or False


def build_trainer(
    cfg: DictConfig, run_dir: Path, choice: PrecisionChoice | None = None
) -> L.Trainer:
    choice = choice or precision_choice(cfg)
    # Known only at run time: precision resolved for this machine, the (possibly resumed) run
    # folder, crash-safe checkpoint writes (not a setting), and callbacks/loggers built above.
    trainer = instantiate(
        _lightning_defaults(cfg.trainer),
        precision=choice.precision,
        callbacks=build_callbacks(cfg),
        logger=build_loggers(cfg),
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        _convert_="all",
    )
    if trainer.is_global_zero:
        log.info(choice.describe())
    return trainer


def build_tester(cfg: DictConfig, run_dir: Path, trainer: L.Trainer) -> L.Trainer:
    """Where the reported val/test metrics are computed: in fp32, as `arttl.evaluate` computes
    them, so results.json and evaluate agree whatever precision trained the network. DDP runs
    keep their trainer (a second one cannot join the running process group)."""
    if trainer.world_size > 1 or trainer.precision == "32-true":
        return trainer
    progress = cfg.callbacks.get("progress")
    # Evaluation settings, fixed whatever the YAML trains with: fp32, no logs, no checkpoints.
    return instantiate(
        _lightning_defaults(cfg.trainer),
        precision="32-true",
        callbacks=[instantiate(progress)] if progress is not None else [],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=str(run_dir),
        _convert_="all",
    )


def recorded_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that checkpoints and results.json record and resume compares.
    ``mode.datamodule`` and the ``data.images`` / ``data.features`` nodes it points at only
    restate ``data.*`` for instantiate (``mode.callbacks`` restates ``mode.*``), so they are left
    out: worker counts may still change on resume, and earlier runs keep their identity."""
    config = resolved(cfg)
    for group, keys in (("mode", ("datamodule", "callbacks")), ("data", ("images", "features"))):
        if isinstance(config.get(group), dict):
            for key in keys:
                config[group].pop(key, None)
    return config


def _search_siblings() -> bool:
    """Look for earlier runs beside this one only for single runs: multirun jobs own their folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN


def resume_plan(cfg: DictConfig, run_dir: Path) -> ResumePlan:
    """Where this run continues from (``resume`` / ``ckpt_path``); see arttl.training.checkpointing."""
    identity = {"experiment": cfg.experiment, "backbone": cfg.backbone.name, "mode": cfg.mode.name}
    # and the same tasks: an earlier tasks=[material] run is not the all-tasks run's sibling
    identity["challenge"] = challenge_name(list(cfg.get("tasks") or []) or cfg.dataset.challenge)
    return plan_resume(
        run_dir,
        bool(cfg.get("resume", False)),
        cfg.get("ckpt_path"),
        identity,
        search_siblings=_search_siblings(),
    )


@dataclass
class RunSetup:
    """What a run is, known before it trains: its store, tasks, model and identity."""

    store_dir: Path
    store: dict[str, Any]
    config: dict[str, Any]
    tasks: dict[str, list[str]] | None  # None: a one-task network on a one-task store
    run_id: str
    choice: PrecisionChoice
    model: ArtClassifier
    digest: str  # weights_digest(model.backbone): the feature cache's key
    identity: dict[str, Any]
    identity_hash: str


@dataclass
class RunOutcome:
    """What fit and the final validate/test left: raw logged values and the checkpoints."""

    trainer: L.Trainer
    eval_precision: Any
    val: dict[str, Any]
    test: dict[str, Any]
    best: str | None
    stable: Path | None
    evaluated: dict[str, int | None]  # images the val/test metrics are on (limit_*_batches)


def images_run(batches: list[int] | Any, loader: Any) -> int | None:
    """How many images a validate/test pass saw: ``trainer.limit_*_batches`` may end it early.
    Hand-written: Lightning counts batches only; its loaders are sequential and keep the last,
    partial batch, so the passes see full batches first."""
    if not batches or loader is None or not hasattr(loader, "dataset"):
        return None
    size = len(loader.dataset)
    return min(int(batches[0]) * int(loader.batch_size), size) if loader.batch_size else size


def run_training(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train, test the lowest-val/loss checkpoint, write results.json; return the record."""
    from arttl.results import write_results

    start = time.time()
    check_train_config(cfg)
    plan = resume_plan(cfg, Path(run_dir))
    moved = plan.run_dir != Path(run_dir)  # the earlier run's folder: train.py drops the new one
    cfg.run_dir = str(plan.run_dir)
    if plan.finished:
        log.info(f"skipping {plan.run_dir} (finished): results.json is there")
        return json.loads((plan.run_dir / "results.json").read_text(encoding="utf-8"))
    if moved:  # continue in the earlier run's folder (checkpoints, csv) and its train.log
        log_also_into(plan.run_dir)
    if plan.ckpt_path is not None:
        log.info(f"resuming from {plan.ckpt_path} (writing into {plan.run_dir})")
    L.seed_everything(int(cfg.seed), workers=True)
    setup = setup_run(cfg, plan)
    outcome = fit_and_test(cfg, plan, setup)
    record = results_record(cfg, setup, outcome, time.time() - start)
    if outcome.trainer.is_global_zero:
        merge_history(plan.run_dir)
        write_results(plan.run_dir / "results.json", record)
    return record


def setup_run(cfg: DictConfig, plan: ResumePlan) -> RunSetup:
    """The store (prepared or reused), the tasks, the resume checks, the model and its
    provenance: everything that can refuse the run does so here, before training."""
    from arttl.results import INIT_NONE, init_kind

    ensure_store(cfg)
    store_dir = Path(cfg.store.dir)
    store = store_provenance(store_dir)
    config = recorded_config(cfg)
    class_names = read_class_names(split_file(store_dir, "train"))
    tasks = model_tasks(cfg, store_dir)
    run_id = continued_run_id(plan, config, store, class_names, tasks, cfg.get("resume_allow"))
    choice = precision_choice(cfg)
    model = build_model(cfg, class_names, str(store_dir), choice, tasks=tasks)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sizes = ", ".join(f"{t} ({len(c)} classes)" for t, c in (tasks or {}).items())
    heads = (
        f"one head per task: {sizes}" if tasks else f"a {model.hparams['num_classes']}-class head"
    )
    log.info(
        f"model: {cfg.backbone.name} + {heads}, mode "
        f"{cfg.mode.name}: {total / 1e6:.2f} M parameters, {trainable / 1e6:.2f} M trainable"
    )
    digest = weights_digest(model.backbone)  # the feature cache's key too
    weights_id = None if init_kind(model.hparams["weights"]) == INIT_NONE else digest
    # the precision it really trains in (auto resolves per machine) is part of what was run
    trained_as = {**config, "trainer": {**config["trainer"], "precision": choice.precision}}
    identity, identity_hash = run_identity(
        trained_as, model.data_config, store, weights_id, task_setup(tasks, model)
    )
    model.provenance = {
        "run_id": run_id,
        "store": store,
        "split_members": split_members(store_dir),
        "run_config": config,
        "identity_hash": identity_hash,
    }
    return RunSetup(
        store_dir, store, config, tasks, run_id, choice, model, digest, identity, identity_hash
    )


def task_setup(tasks: dict[str, list[str]] | None, model: ArtClassifier) -> dict[str, Any] | None:
    """What the run's identity records of its tasks (None for a one-task store): the classes
    per task and the weight of each task's loss, which both change the result."""
    if tasks is None:
        return None
    weights = model.hparams.get("task_weights") or {}
    return {"classes": tasks, "weights": {t: float(weights.get(t, 1.0)) for t in tasks}}


def continued_run_id(
    plan: ResumePlan,
    config: dict[str, Any],
    store: dict[str, Any],
    class_names: list[str],
    tasks: dict[str, list[str]] | None,
    allow: Any,
) -> str:
    """A fresh run id, or the resumed run's once its checkpoint is known to fit this run (the
    same tasks and classes, the same settings); see arttl.training.checkpointing."""
    if plan.ckpt_path is None:
        return new_run_id()
    check_same_classes(plan.ckpt_path, class_names, tasks)
    saved = read_provenance(plan.ckpt_path)
    check_resume(plan.ckpt_path, saved, config, store, tuple(allow or ()))
    return saved.get("run_id") or new_run_id()  # the same run goes on


def fit_and_test(cfg: DictConfig, plan: ResumePlan, setup: RunSetup) -> RunOutcome:
    """Fit (or continue), then validate and test the best checkpoint in fp32; copy it to the
    stable checkpoint path."""
    model, run_dir = setup.model, plan.run_dir
    # The mode picks its datamodule (conf/mode/*.yaml); the model and its store exist only now.
    dm = instantiate(
        cfg.mode.datamodule, model=model, store_dir=setup.store_dir, digest=setup.digest
    )
    trainer = build_trainer(cfg, run_dir, setup.choice)
    ckpt_path = plan.ckpt_path
    if ckpt_path is not None:
        if trainer.is_global_zero:
            keep_history(run_dir, ckpt_path)
        ckpt_path = continue_in(run_dir, ckpt_path)  # another run's: its best comes along
    with ddp_job(trainer.world_size), warnings.catch_warnings():
        if ckpt_path is not None:  # continuing: the checkpoints there are this run's own
            warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        # callbacks.checkpoint (best.ckpt) comes before callbacks.last in conf/callbacks
        ckpt_cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
        tester = build_tester(cfg, run_dir, trainer)
        # Re-validating the best checkpoint is not a new epoch: keep it out of the curves.
        loggers, tester.loggers = tester.loggers, []
        val_raw = tester.validate(model, datamodule=dm, ckpt_path=best, verbose=False)[0]
        evaluated = {"val": images_run(tester.num_val_batches, tester.val_dataloaders)}
        tester.loggers = loggers
        test_raw = tester.test(model, datamodule=dm, ckpt_path=best, verbose=False)[0]
        evaluated["test"] = images_run(tester.num_test_batches, tester.test_dataloaders)
    stable = None
    if best and cfg.save_stable_checkpoint and trainer.is_global_zero:
        stable = stable_checkpoint_path(cfg)
        save_stable_copy(best, stable, setup.run_id)
    return RunOutcome(trainer, tester.precision, val_raw, test_raw, best, stable, evaluated)


def save_stable_copy(best: str, stable: Path, run_id: str) -> None:
    """Copy the run's best checkpoint to its stable name, saying whose copy it replaces: seeds,
    sweep jobs and trials of one name, backbone and mode share that file (the last run's wins);
    each run's results.json names its own best.ckpt, which nothing replaces."""
    if stable.is_file():
        old = read_provenance(stable)
        if old.get("run_id") != run_id:
            was = old.get("run_config") or {}
            log.warning(
                "%s now holds this run's best checkpoint; it held run %s's (seed %s, %s). "
                "*_from_* presets and commands naming this file get this run's network.",
                display_path(stable),
                old.get("run_id", "?"),
                was.get("seed", "?"),
                display_path(was.get("run_dir", "?")),
            )
    with atomic_path(stable) as tmp:
        shutil.copyfile(best, tmp)


def results_record(
    cfg: DictConfig, setup: RunSetup, outcome: RunOutcome, seconds: float
) -> dict[str, Any]:
    """results.json (arttl.results). A run of a multi-task store adds ``tasks``; its top-level
    val/test are then the mean over its tasks and num_classes the sum of their classes."""
    best = outcome.best
    record = {
        "experiment": cfg.experiment,
        "dataset": cfg.dataset.name,
        "challenge": setup.model.hparams[
            "challenge"
        ],  # the tasks it learnt, as build_model named them
        "backbone": cfg.backbone.name,
        "mode": cfg.mode.name,
        "weights": None if cfg.backbone.weights is None else str(cfg.backbone.weights),
        "num_classes": int(setup.model.hparams["num_classes"]),
        "samples": {s: int(n) for s, n in setup.store["counts"].items()},
        "evaluated": partial_evaluation(outcome.evaluated, setup.store["counts"]),
        "best_epoch": checkpoint_epoch(best) if best else None,
        "val": metric_record(outcome.val, "val/"),
        "test": metric_record(outcome.test, "test/"),
        "wall_seconds": round(seconds, 2),
        "versions": _versions(),
        **setup.choice.record(),  # precision, device, channels_last, cpu_bf16 (training)
        "eval_precision": outcome.eval_precision,  # val/test above
        "seed": int(cfg.seed),
        "checkpoint": str(best or ""),  # this run's own: nothing replaces it
        # the copy other experiments name; the next run of this name, backbone and mode replaces it
        "stable_checkpoint": None if outcome.stable is None else str(outcome.stable),
        "history_csv": "metrics.csv",
        "run_id": setup.run_id,
        "identity_hash": setup.identity_hash,
        "identity": setup.identity,
        "store": setup.store,
    }
    if setup.tasks is not None:
        record["tasks"] = task_results(setup.tasks, setup.store_dir, outcome.val, outcome.test)
    return record


def task_results(
    tasks: dict[str, list[str]], store_dir: Path, val: dict[str, Any], test: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """results.json's ``tasks``: per task its classes, the images with its label per split, and
    its own val/test metrics (logged as ``val/<task>/...``, ``test/<task>/...``)."""
    samples: dict[str, dict[str, int]] = {t: {} for t in tasks}
    for split in SPLITS:
        labels = H5ImageDataset(split_file(store_dir, split), tasks=list(tasks)).labels
        for i, task in enumerate(tasks):
            samples[task][split] = int((labels[:, i] >= 0).sum())
    return {
        task: {
            "classes": list(classes),
            "samples": samples[task],
            "val": metric_record(val, f"val/{task}/"),
            "test": metric_record(test, f"test/{task}/"),
        }
        for task, classes in tasks.items()
    }


def partial_evaluation(
    evaluated: dict[str, int | None], counts: dict[str, int]
) -> dict[str, int | None]:
    """results.json's ``evaluated``: the images val/test metrics are on; a pass cut short by
    ``trainer.limit_*_batches`` is said loudly (its numbers are not the split's)."""
    for split, n in evaluated.items():
        if n is not None and n < int(counts.get(split, n)):
            log.warning(
                "%s metrics are on %d of the %d %s images (trainer.limit_%s_batches): not the "
                "whole split's numbers",
                split,
                n,
                counts[split],
                split,
                split,
            )
    return evaluated


def stable_checkpoint_path(cfg: DictConfig) -> Path:
    """``checkpoints/<name>/<backbone>-<mode>.ckpt``: the copy later experiments name (the run's
    ``name``, so two studies never share one; see conf/train.yaml). A network of a subset of the
    store's tasks (``tasks=[material]``) adds them (``...-fine_tune-material.ckpt``), so it never
    replaces the network of all tasks."""
    subset = f"-{challenge_name(list(cfg.tasks))}" if cfg.get("tasks") else ""
    name = f"{cfg.backbone.name}-{cfg.mode.name}{subset}.ckpt"
    return Path(cfg.paths.checkpoint_dir) / str(cfg.name) / name


def _versions() -> dict[str, str]:
    import lightning
    import timm

    return {
        "arttl": arttl.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
    }
