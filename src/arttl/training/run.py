"""One training run from a composed config: validate, prepare if needed, fit, test, write results."""

from __future__ import annotations

import json
import logging
import shutil
import time
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
from arttl.config_schema import check_train_config, resolved
from arttl.data.build import store_provenance
from arttl.data.config import prepare_from_config
from arttl.data.datamodule import check_store
from arttl.data.features import weights_digest
from arttl.data.store import read_class_names, split_file
from arttl.data.summary import print_store_summary
from arttl.models.classifier import ArtClassifier, metric_record
from arttl.models.transfer import HeadFirstFinetuning
from arttl.training.checkpointing import (
    AtomicCheckpointIO,
    ResumePlan,
    RNGState,
    check_same_classes,
    checkpoint_epoch,
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


def build_model(
    cfg: DictConfig, class_names: list[str], store_dir: str, choice: PrecisionChoice | None = None
) -> ArtClassifier:
    choice = choice or precision_choice(cfg)
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
        challenge=cfg.dataset.challenge,
        store=str(store_dir),
    )


def _lightning_defaults(trainer: DictConfig) -> DictConfig:
    """``conf/trainer`` without its null keys: null means Lightning's own default there
    (e.g. ``trainer.num_nodes=null``), which passing None would not give."""
    keys = OmegaConf.to_container(trainer, resolve=True)
    return OmegaConf.create({k: v for k, v in keys.items() if v is not None})


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """``conf/callbacks``, each instantiated (null drops one), and arttl's own."""
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    callbacks.append(RNGState())  # exact resume depends on it: no setting, so not in YAML
    if cfg.mode.name == "gradual":
        callbacks.append(
            HeadFirstFinetuning(
                unfreeze_backbone_at_epoch=int(cfg.mode.unfreeze_at_epoch),
                # Lightning's ramp (its defaults): the backbone joins at lr x ratio, then its lr
                # doubles every epoch until it reaches the head's (should_align)
                backbone_initial_ratio_lr=float(cfg.mode.get("backbone_lr_ratio", 0.1)),
            )
        )
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
    restate ``data.*`` for instantiate, so they are left out: worker counts may still change on
    resume, and earlier runs keep their identity."""
    config = resolved(cfg)
    for group, keys in (("mode", ("datamodule",)), ("data", ("images", "features"))):
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
    return plan_resume(
        run_dir,
        bool(cfg.get("resume", False)),
        cfg.get("ckpt_path"),
        identity,
        search_siblings=_search_siblings(),
    )


def run_training(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train, test the lowest-val/loss checkpoint, write results.json; return the record."""
    from arttl.results import INIT_NONE, init_kind, write_results

    start = time.time()
    run_dir = Path(run_dir)
    check_train_config(cfg)
    plan = resume_plan(cfg, run_dir)
    if plan.finished:
        log.info(f"skipping {plan.run_dir} (finished): results.json is there")
        return json.loads((plan.run_dir / "results.json").read_text(encoding="utf-8"))
    if plan.run_dir != run_dir:  # continue in the earlier run's folder (checkpoints, metrics.csv)
        cfg.run_dir = str(plan.run_dir)
        run_dir = plan.run_dir
    if plan.ckpt_path is not None:
        log.info(f"resuming from {plan.ckpt_path} (writing into {run_dir})")
    L.seed_everything(int(cfg.seed), workers=True)
    ensure_store(cfg)
    store_dir = Path(cfg.store.dir)
    store = store_provenance(store_dir)
    config = recorded_config(cfg)
    class_names = read_class_names(split_file(store_dir, "train"))
    run_id = new_run_id()
    if plan.ckpt_path is not None:
        check_same_classes(plan.ckpt_path, class_names)
        saved = read_provenance(plan.ckpt_path)
        check_resume(plan.ckpt_path, saved, config, store, tuple(cfg.get("resume_allow") or ()))
        run_id = saved.get("run_id") or run_id  # the same run goes on
    choice = precision_choice(cfg)
    model = build_model(cfg, class_names, str(store_dir), choice)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        f"model: {cfg.backbone.name} + a {len(class_names)}-class head, mode {cfg.mode.name}: "
        f"{total / 1e6:.2f} M parameters, {trainable / 1e6:.2f} M trainable"
    )
    weights = None if cfg.backbone.weights is None else str(cfg.backbone.weights)
    digest = weights_digest(model.backbone)  # the feature cache's key too
    weights_id = None if init_kind(weights) == INIT_NONE else digest  # random init varies by seed
    # the precision it really trains in (auto resolves per machine) is part of what was run
    trained_as = {**config, "trainer": {**config["trainer"], "precision": choice.precision}}
    identity, identity_hash = run_identity(trained_as, model.data_config, store, weights_id)
    model.provenance = {
        "run_id": run_id,
        "store": store,
        "split_members": split_members(store_dir),
        "run_config": config,
        "identity_hash": identity_hash,
    }
    # The mode picks its datamodule (conf/mode/*.yaml); the model and its store exist only now.
    dm = instantiate(cfg.mode.datamodule, model=model, store_dir=store_dir, digest=digest)
    trainer = build_trainer(cfg, run_dir, choice)
    if plan.ckpt_path is not None and trainer.is_global_zero:
        keep_history(run_dir, plan.ckpt_path)
    with ddp_job(trainer.world_size):
        trainer.fit(model, datamodule=dm, ckpt_path=plan.ckpt_path)
        ckpt_cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
        tester = build_tester(cfg, run_dir, trainer)
        # Re-validating the best checkpoint is not a new epoch: keep it out of the curves.
        loggers, tester.loggers = tester.loggers, []
        val_raw = tester.validate(model, datamodule=dm, ckpt_path=best, verbose=False)[0]
        tester.loggers = loggers
        test_raw = tester.test(model, datamodule=dm, ckpt_path=best, verbose=False)[0]
    best_epoch = checkpoint_epoch(best) if best else None
    stable = None
    if best and cfg.save_stable_checkpoint and trainer.is_global_zero:
        stable = stable_checkpoint_path(cfg)
        with atomic_path(stable) as tmp:
            shutil.copyfile(best, tmp)
    counts = {s: int(n) for s, n in store["counts"].items()}
    record = {
        "experiment": cfg.experiment,
        "dataset": cfg.dataset.name,
        "challenge": cfg.dataset.challenge,
        "backbone": cfg.backbone.name,
        "mode": cfg.mode.name,
        "weights": None if cfg.backbone.weights is None else str(cfg.backbone.weights),
        "num_classes": len(class_names),
        "samples": counts,
        "best_epoch": best_epoch,
        "val": metric_record(val_raw, "val/"),
        "test": metric_record(test_raw, "test/"),
        "wall_seconds": round(time.time() - start, 2),
        "versions": _versions(),
        **choice.record(),  # precision, device, channels_last, cpu_bf16 (training)
        "eval_precision": tester.precision,  # val/test above
        "seed": int(cfg.seed),
        "checkpoint": str(stable or best or ""),
        "run_checkpoint": str(best or ""),  # this run's own copy: later runs replace `checkpoint`
        "history_csv": "metrics.csv",
        "run_id": run_id,
        "identity_hash": identity_hash,
        "identity": identity,
        "store": store,
    }
    if trainer.is_global_zero:
        merge_history(run_dir)
        write_results(run_dir / "results.json", record)
    return record


def stable_checkpoint_path(cfg: DictConfig) -> Path:
    """``checkpoints/<name>/<backbone>-<mode>.ckpt``: the copy later experiments name (the run's
    ``name``, so two studies never share one; see conf/train.yaml)."""
    return (
        Path(cfg.paths.checkpoint_dir) / str(cfg.name) / f"{cfg.backbone.name}-{cfg.mode.name}.ckpt"
    )


def _versions() -> dict[str, str]:
    import lightning
    import timm

    return {
        "arttl": arttl.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
    }
