"""The LightningModule: timm backbone + linear head, a transfer mode, top-1/3/5 metrics."""

from __future__ import annotations

import math
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from arttl.data.transforms import build_transform
from arttl.errors import TrainingDiverged
from arttl.models.backbone import create_backbone
from arttl.models.transfer import (
    apply_transfer_mode,
    check_mode,
    freeze_frozen_batchnorm,
)

TOP_KS = (1, 3, 5)
METRIC_KEYS = (*(f"top{k}" for k in TOP_KS), "macro_top1", "loss")
PREDICT_OUTPUTS = ("logits", "probs", "features")


def has_top_k(k: int, num_classes: int) -> bool:
    """The project's one top-k rule: a top-k over all classes (k >= num_classes) is always 1,
    so it is not measured (null in results.json, metrics.json and the report)."""
    return k == 1 or k < num_classes


def pixel_scale(data_config: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The data config's mean and std as (1, 3, 1, 1) tensors on the 0..255 scale, so uint8
    pixels are normalised without a division by 255 first."""
    mean = torch.tensor(data_config["mean"]).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(data_config["std"]).view(1, 3, 1, 1) * 255.0
    return mean, std


def normalize_pixels(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 (or float 0..1) images -> the network's float input, with ``mean``/``std``
    from :func:`pixel_scale`: the one normalisation of training, evaluate, predict, the feature
    cache, saliency and the uint8 export."""
    x = x.float() if x.dtype == torch.uint8 else x.float() * 255.0
    return (x - mean) / std


def batch_images(batch: Any) -> torch.Tensor | None:
    """The images of a batch: the batch itself, or the first item of an (images, ...) tuple."""
    return batch[0] if isinstance(batch, list | tuple) else batch


def make_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """top-k for every k that :func:`has_top_k` allows, plus macro top-1 (mean per-class recall)."""
    metrics: dict[str, nn.Module] = {
        f"top{k}": MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")
        for k in TOP_KS
        if has_top_k(k, num_classes)
    }
    metrics["macro_top1"] = MulticlassAccuracy(num_classes=num_classes, top_k=1, average="macro")
    # compute_groups=False: torchmetrics would otherwise merge metrics whose states happen to be
    # equal after the first batch (e.g. a class-sorted batch all right at top-1) into one state,
    # and top-3/top-5 would silently report top-1's value.
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


def metric_record(values: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """``{top1, top3, top5, macro_top1, loss}`` from logged/computed values; absent ones are None."""
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        value = values.get(f"{prefix}{key}")
        out[key] = None if value is None else float(value)
    return out


def task_classes(hparams: Mapping[str, Any]) -> dict[str, list[str]]:
    """A network's task -> class names from its hyper-parameters (a checkpoint's too); a one-task
    network's task is its challenge."""
    tasks = hparams.get("tasks")
    if tasks:
        return {str(t): list(names) for t, names in tasks.items()}
    return {str(hparams.get("challenge") or "label"): list(hparams.get("class_names") or [])}


def task_slices(tasks: Mapping[str, list[str]]) -> dict[str, slice]:
    """Each task's columns of the concatenated logits (one linear head per task, stacked)."""
    out, start = {}, 0
    for task, names in tasks.items():
        out[task] = slice(start, start + len(names))
        start += len(names)
    return out


class TaskLoss(NamedTuple):
    """One task's part of a batch: the mean cross-entropy over the images that have its label,
    how many have it, and which (the mask the task's metrics reuse)."""

    loss: torch.Tensor
    n: int
    has: torch.Tensor


def task_losses(
    logits: torch.Tensor, labels: torch.Tensor, slices: Mapping[str, slice]
) -> dict[str, TaskLoss]:
    """Per task, its :class:`TaskLoss`. ``labels`` is (batch, tasks) with -1 where an image has
    no label; a task with no label in the batch has loss 0 and count 0."""
    out = {}
    for i, (task, cols) in enumerate(slices.items()):
        has = labels[:, i] >= 0
        n = int(has.sum())
        loss = F.cross_entropy(logits[has, cols].float(), labels[has, i]) if n else logits.sum() * 0
        out[task] = TaskLoss(loss, n, has)
    return out


def weighted_loss(parts: Mapping[str, TaskLoss], weights: Mapping[str, float]) -> torch.Tensor:
    """The training loss of several tasks: the weighted sum of their masked cross-entropies."""
    return sum(weights.get(t, 1.0) * part.loss for t, part in parts.items())  # type: ignore[return-value]


def mean_record(records: Mapping[str, Mapping[str, float | None]]) -> dict[str, float | None]:
    """The mean over tasks of each metric (None when a task lacks it): a multi-task run's
    top-level val/test numbers, and what its early stopping and checkpoints monitor."""
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        values = [r.get(key) for r in records.values()]
        out[key] = None if any(v is None for v in values) else float(sum(values) / len(values))  # type: ignore[arg-type]
    return out


@torch.no_grad()
def compute_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float | None]:
    """The same metrics training logs, computed in one go (evaluate, tests, the report's checks)."""
    metrics = make_metrics(int(logits.shape[1]), "")
    metrics.update(logits.float(), labels)
    values: dict[str, Any] = {k: v.item() for k, v in metrics.compute().items()}
    values["loss"] = F.cross_entropy(logits.float(), labels).item()
    return metric_record(values)


class TaskMetrics(nn.Module):
    """A multi-task network's metrics: per stage and task, the top-k collection and the mean loss
    over the images that have the task's label. Hand-written: torchmetrics has no masked
    multi-output wrapper for a different class count per task."""

    def __init__(self, tasks: Mapping[str, list[str]]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        # ModuleDict keys cannot be "train" (an nn.Module method): keyed by "<stage>_"
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_": nn.ModuleList(
                    make_metrics(len(tasks[t]), f"{stage}/{t}/") for t in tasks
                )
                for stage in ("train", "val", "test")
            }
        )
        self.losses = nn.ModuleDict(
            {f"{s}_": nn.ModuleList(MeanMetric() for _ in tasks) for s in ("train", "val", "test")}
        )
        self.slices = task_slices(tasks)

    def update(
        self, stage: str, logits: torch.Tensor, labels: torch.Tensor, parts: Mapping[str, TaskLoss]
    ) -> None:
        """One batch, with the masks and losses :func:`task_losses` computed for it."""
        for i, (task, cols) in enumerate(self.slices.items()):
            loss, n, has = parts[task]
            if n:
                self.metrics[f"{stage}_"][i].update(logits[has, cols], labels[has, i])
                self.losses[f"{stage}_"][i].update(loss.detach().float(), weight=n)

    def compute(self, stage: str, weights: Mapping[str, float]) -> dict[str, float]:
        """``<stage>/<task>/<metric>`` for every task, ``<stage>/<metric>`` the mean over tasks
        (the loss: over tasks with a weight above 0), then reset for the next epoch."""
        records: dict[str, dict[str, float | None]] = {}
        for i, task in enumerate(self.tasks):
            metrics, losses = self.metrics[f"{stage}_"][i], self.losses[f"{stage}_"][i]
            values: dict[str, Any] = {}
            with warnings.catch_warnings():  # a rank (or the epoch) without the task's labels
                warnings.filterwarnings("ignore", message=".*called before the ``update``")
                # Every DDP rank computes (each compute is a collective, whatever the rank saw);
                # the synced mean loss is nan only when no rank saw any of the task's labels.
                loss = losses.compute()
                if not torch.isnan(loss):
                    values = {k.rsplit("/", 1)[-1]: v for k, v in metrics.compute().items()}
                    values["loss"] = loss
            records[task] = metric_record(values)
            metrics.reset()
            losses.reset()
        out = {
            f"{stage}/{t}/{k}": v for t, r in records.items() for k, v in r.items() if v is not None
        }
        weighted = {t: r for t, r in records.items() if weights.get(t, 1.0) > 0}
        loss_mean = mean_record(weighted).get("loss")
        mean = mean_record(records)
        mean["loss"] = loss_mean
        out |= {f"{stage}/{k}": v for k, v in mean.items() if v is not None}
        return out


class ArtClassifier(L.LightningModule):
    """One network for every transfer mode, so checkpoints from any mode load the same way.

    Input is either uint8 images (normalised here, on the device) or cached backbone features
    (2-D, off-the-shelf mode), so the frozen backbone needn't run every epoch.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        class_names: list[str] | None = None,
        mode: str = "fine_tune",
        weights: str | None = "none",
        image_size: int | None = None,
        partial_fraction: float = 0.2,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        channels_last: bool = False,
        experiment: str | None = None,
        dataset: str | None = None,
        challenge: str | None = None,
        store: str | None = None,
        data_config: dict[str, Any] | None = None,
        init_weights: bool = True,
        tasks: dict[str, list[str]] | None = None,
        task_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        check_mode(mode, partial_fraction, weights)
        if tasks is not None:  # several tasks: one head per task, stacked into one Linear
            tasks = {str(t): [str(c) for c in names] for t, names in tasks.items()}
            num_classes = sum(len(names) for names in tasks.values())
            class_names = next(iter(tasks.values()))
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "init_weights"])
        self.backbone, resolved = create_backbone(
            backbone, weights if init_weights else "none", image_size
        )
        if data_config is None:
            self.hparams["data_config"] = data_config = resolved
        self.hparams["optimizer_repr"] = repr(optimizer)
        if class_names is None:
            self.hparams["class_names"] = [str(i) for i in range(num_classes)]
        self.head = nn.Linear(self.backbone.num_features, num_classes)
        self.trainable = apply_transfer_mode(self.backbone, mode, partial_fraction)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        mean, std = pixel_scale(data_config)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        # What made this model (run id, store provenance, split members, run config): set by
        # arttl.training.run, saved in every checkpoint, read by resume and evaluate.
        self.provenance: dict[str, Any] = {}
        if tasks is None:
            self.train_metrics = make_metrics(num_classes, "train/")
            self.val_metrics = make_metrics(num_classes, "val/")
            self.test_metrics = make_metrics(num_classes, "test/")
        else:
            self.task_metrics = TaskMetrics(tasks)

    # -- forward ---------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.hparams["class_names"])

    @property
    def task_names(self) -> list[str] | None:
        """The tasks of a multi-task network, in head order (None: one task)."""
        tasks = self.hparams.get("tasks")
        return list(tasks) if tasks else None

    @property
    def task_classes(self) -> dict[str, list[str]]:
        """Task -> class names; a one-task network's task is its challenge."""
        return task_classes(self.hparams)

    @property
    def task_slices(self) -> dict[str, slice]:
        """Each task's columns of :meth:`logits` (one task: all of them)."""
        return task_slices(self.task_classes)

    @property
    def data_config(self) -> dict[str, Any]:
        return dict(self.hparams["data_config"])

    @property
    def backbone_frozen(self) -> bool:
        return self.hparams["mode"] == "off_the_shelf"

    def eval_transform(self) -> Callable:
        return build_transform(self.data_config, training=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 0..255 (or float 0..1) images -> the backbone's normalised float input."""
        x = normalize_pixels(x, self.mean, self.std)
        if self.hparams["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float images -> logits (what Captum and exporters see)."""
        return self.head(self.backbone(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from a batch of uint8 images or of cached features."""
        if x.ndim == 2:
            return self.head(x.float())
        return self(self.normalize(x))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_step(x, 0, output="probs")

    def train(self, mode: bool = True) -> ArtClassifier:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()  # off-the-shelf: BatchNorm statistics must not move
        else:
            freeze_frozen_batchnorm(self.backbone)
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning >= 2.2 never calls .train() itself; this re-applies our frozen-BatchNorm
        # rules each epoch, after fine-tuning callbacks (which run first) unfroze layers.
        self.train()

    def setup(self, stage: str) -> None:
        if self.hparams["channels_last"]:
            self.to(memory_format=torch.channels_last)

    # -- steps -----------------------------------------------------------------------------
    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        """One task: cross-entropy, and the stage's top-k collection (``<stage>_metrics``)."""
        if self.task_names is not None:
            return self._task_step(batch, stage)
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        x, y = batch
        logits = self.logits(x)
        loss = F.cross_entropy(logits.float(), y)
        metrics.update(logits.detach().float(), y)
        on_step = stage == "train"
        # sync_dist: under DDP val/test loss is the mean over all ranks (metrics sync themselves)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            batch_size=len(y),
            sync_dist=not on_step,
        )
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return loss

    def _task_step(self, batch: Any, stage: str) -> torch.Tensor:
        """Several tasks: masked cross-entropy per task, their weighted sum is the loss; per-task
        metrics and epoch losses are logged at the epoch's end (``_log_task_epoch``)."""
        x, y = batch
        logits = self.logits(x)
        parts = task_losses(logits, y, self.task_metrics.slices)  # built once, not per step
        loss = weighted_loss(parts, self.hparams.get("task_weights") or {})
        self.task_metrics.update(stage, logits.detach().float(), y, parts)
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=len(y))
        return loss

    def _log_task_epoch(self, stage: str) -> None:
        if self.task_names is not None:
            values = self.task_metrics.compute(stage, self.hparams.get("task_weights") or {})
            self.log_dict(values, on_epoch=True, sync_dist=False)

    def on_train_epoch_end(self) -> None:
        self._log_task_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_task_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_task_epoch("test")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not math.isfinite(loss.item()):
            raise TrainingDiverged(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, batch "
                f"{batch_idx}; lower the learning rate (optimizer.lr). The last good checkpoint "
                "(last.ckpt / best.ckpt) is kept."
            )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def predict_step(
        self, batch: Any, batch_idx: int = 0, dataloader_idx: int = 0, *, output: str = "probs"
    ) -> torch.Tensor:
        """One batch of images -> float32 ``output``: logits, probabilities, or the pooled
        backbone features (the off-the-shelf cache). The one inference step: evaluate, predict
        and the feature cache all run it through ``arttl.inference.runner.predict_batches``."""
        x = batch_images(batch)
        if output == "features":
            return self.backbone(self.normalize(x)).float()
        if output not in PREDICT_OUTPUTS:
            raise ValueError(f"output={output!r}; use one of {PREDICT_OUTPUTS}")
        logits = self.logits(x).float()
        if output == "logits":
            return logits
        # a softmax per task: each task's probabilities sum to 1 in its own columns
        return torch.cat([logits[:, cols].softmax(dim=-1) for cols in self.task_slices.values()], 1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.provenance:
            checkpoint["arttl_provenance"] = self.provenance

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.provenance = dict(checkpoint.get("arttl_provenance") or {})

    # -- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        factory = self.optimizer_factory or (lambda ps: torch.optim.SGD(ps, lr=1e-3))
        optimizer = factory(params)
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "monitor": "val/loss"},
        }

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> ArtClassifier:
        """Load for inference anywhere: the checkpoint alone is enough, no weights are fetched."""
        from arttl.errors import ConfigError

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"ckpt={str(path)!r}: file not found.")
        try:
            # arttl checkpoints pickle their hyper-parameters: load only files you trust.
            # mmap keeps this first look cheap for multi-GB checkpoints.
            mmap = zipfile.is_zipfile(path)  # only torch's zip format can be memory-mapped
            raw = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except Exception as err:  # truncated or non-torch files fail in many ways inside torch.load
            raise ConfigError(
                f"ckpt={str(path)!r} is not a readable arttl checkpoint "
                f"({type(err).__name__}: {str(err)[:200]}); is the file truncated or of another kind?"
            ) from err
        hparams = raw.get("hyper_parameters") if isinstance(raw, dict) else None
        if not isinstance(hparams, dict) or not {"backbone", "class_names"} <= hparams.keys():
            raise ConfigError(
                f"ckpt={str(path)!r} is not an arttl checkpoint: it has no arttl hyper-parameters "
                "(backbone, class_names). Use a checkpoint written by `python -m arttl.train`."
            )
        del raw
        try:
            model = cls.load_from_checkpoint(
                path, map_location=map_location, weights_only=False, init_weights=False
            )
        except Exception as err:  # e.g. a state dict that no longer fits the architecture
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"ckpt={str(path)!r} is not an arttl checkpoint ({err}).") from err
        return model.eval()
