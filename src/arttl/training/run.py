"""One training run from a composed config: validate, prepare if needed, fit, test, write results."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

import arttl
from arttl.atomic import atomic_path
from arttl.data.build import store_provenance
from arttl.data.config import prepare_from_config
from arttl.data.datamodule import FeatureDataModule, StoreDataModule, check_store
from arttl.data.features import cached_features, weights_digest
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
from arttl.training.provenance import (
    check_resume,
    new_run_id,
    read_provenance,
    run_identity,
    split_members,
)
from arttl.training.validation import resolved, validate_config

__all__ = ["build_model", "build_trainer", "run_training"]


def ensure_store(cfg: DictConfig) -> dict[str, Any]:
    """The store this config asks for: reused only when its provenance matches the source on
    disk and the settings (else rebuilt, saying why, or refused when it is another source's)."""
    store_dir = Path(cfg.store.dir)
    summary = prepare_from_config(cfg)
    if summary.get("reused") and not summary.get("unverified"):
        print(f"store {store_dir} is current (same source files and settings)")
    else:
        print_store_summary(summary)
    return check_store(store_dir, cfg.dataset.challenge)


def build_model(cfg: DictConfig, class_names: list[str], store_dir: str) -> ArtClassifier:
    channels_last = (
        cfg.channels_last if cfg.channels_last is not None else torch.cuda.is_available()
    )
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
        channels_last=bool(channels_last),
        experiment=cfg.experiment,
        dataset=cfg.dataset.name,
        challenge=cfg.dataset.challenge,
        store=str(store_dir),
    )


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    callbacks.append(RNGState())
    if cfg.mode.name == "gradual":
        callbacks.append(
            HeadFirstFinetuning(
                unfreeze_backbone_at_epoch=int(cfg.mode.unfreeze_at_epoch),
                backbone_initial_ratio_lr=float(cfg.mode.get("backbone_lr_ratio", 0.1)),
            )
        )
    loggers = [instantiate(c) for c in cfg.logger] if cfg.logger else False
    precision = cfg.trainer.precision or ("bf16-mixed" if torch.cuda.is_available() else "32-true")
    kwargs = {
        k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if v is not None
    }
    kwargs.pop("_target_", None)
    kwargs["precision"] = precision
    return L.Trainer(
        **kwargs,
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )


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
    validate_config(cfg)
    plan = resume_plan(cfg, run_dir)
    if plan.finished:
        print(f"skipping {plan.run_dir} (finished): results.json is there")
        return json.loads((plan.run_dir / "results.json").read_text(encoding="utf-8"))
    if plan.run_dir != run_dir:  # continue in the earlier run's folder (checkpoints, metrics.csv)
        cfg.run_dir = str(plan.run_dir)
        run_dir = plan.run_dir
    if plan.ckpt_path is not None:
        print(f"resuming from {plan.ckpt_path} (writing into {run_dir})")
    L.seed_everything(int(cfg.seed), workers=True)
    attrs = ensure_store(cfg)
    store_dir = Path(cfg.store.dir)
    store = store_provenance(store_dir)
    config = resolved(cfg)
    class_names = read_class_names(split_file(store_dir, "train"))
    run_id = new_run_id()
    if plan.ckpt_path is not None:
        check_same_classes(plan.ckpt_path, class_names)
        check_resume(plan.ckpt_path, config, store, tuple(cfg.get("resume_allow") or ()))
        run_id = read_provenance(plan.ckpt_path).get("run_id") or run_id  # the same run goes on
    model = build_model(cfg, class_names, str(store_dir))
    weights = None if cfg.backbone.weights is None else str(cfg.backbone.weights)
    digest = None if init_kind(weights) == INIT_NONE else weights_digest(model.backbone)
    identity, identity_hash = run_identity(config, model.data_config, store, digest)
    model.provenance = {
        "run_id": run_id,
        "store": store,
        "split_members": split_members(store_dir),
        "run_config": config,
        "identity_hash": identity_hash,
    }
    dm: L.LightningDataModule
    if cfg.mode.name == "off_the_shelf":
        features, _ = cached_features(
            model,
            store_dir,
            cfg.paths.cache_dir,
            batch_size=max(64, int(cfg.data.batch_size)),
            num_workers=int(cfg.data.num_workers),
        )
        dm = FeatureDataModule(features, int(cfg.data.feature_batch_size or cfg.data.batch_size))
    else:
        dm = StoreDataModule(
            store_dir,
            model.data_config,
            batch_size=int(cfg.data.batch_size),
            num_workers=int(cfg.data.num_workers),
            scale=tuple(cfg.data.scale),
            hflip=float(cfg.data.hflip),
            color_jitter=cfg.data.color_jitter,
            augment=bool(cfg.data.augment),
            gpu_decode=bool(cfg.data.get("gpu_decode", False)),
        )
    trainer = build_trainer(cfg, run_dir)
    if plan.ckpt_path is not None and trainer.is_global_zero:
        keep_history(run_dir, plan.ckpt_path)
    with ddp_job(trainer.world_size):
        trainer.fit(model, datamodule=dm, ckpt_path=plan.ckpt_path)
        ckpt_cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
        # Re-validating the best checkpoint is not a new epoch: keep it out of the curves.
        loggers, trainer.loggers = trainer.loggers, []
        val_raw = trainer.validate(model, datamodule=dm, ckpt_path=best, verbose=False)[0]
        trainer.loggers = loggers
        test_raw = trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False)[0]
    best_epoch = checkpoint_epoch(best) if best else None
    stable = None
    if best and cfg.save_stable_checkpoint and trainer.is_global_zero:
        stable = (
            Path(cfg.paths.checkpoint_dir)
            / cfg.experiment
            / f"{cfg.backbone.name}-{cfg.mode.name}.ckpt"
        )
        with atomic_path(stable) as tmp:
            shutil.copyfile(best, tmp)
    counts = {s: int(n) for s, n in json.loads(attrs["counts"]).items()}
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


def _versions() -> dict[str, str]:
    import lightning
    import timm

    return {
        "arttl": arttl.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
    }
