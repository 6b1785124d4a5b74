"""What each transfer mode trains: frozen parts, trainable layer groups, BatchNorm behaviour."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import BackboneFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from arttl.errors import ConfigError, choice_error

MODES = ("off_the_shelf", "fine_tune", "partial", "scratch", "gradual")


def check_mode(mode: str, partial_fraction: float = 0.2, weights: str | None = None) -> None:
    """Reject a mode, fraction or weights combination that cannot work, before any work starts."""
    if mode not in MODES:
        raise choice_error("mode.name", mode, MODES)
    if mode == "partial" and not 0.0 < float(partial_fraction) <= 1.0:
        raise ConfigError(
            f"mode.partial_fraction={partial_fraction!r} must be in (0, 1]: the fraction of the "
            "backbone's top layer groups that train (0.2 = the top 20%)."
        )
    if mode == "scratch" and weights not in (None, "none"):
        raise ConfigError(
            f"mode=scratch trains from random initialisation, but backbone.weights={weights!r}; "
            "drop the weights override or use mode=fine_tune."
        )


def layer_groups(backbone: nn.Module) -> list[list[str]]:
    """Parameter names per layer group, bottom to top, from timm's own grouping of the network."""
    from timm.models import group_parameters

    groups = group_parameters(backbone, backbone.group_matcher(coarse=False))
    return [names for _, names in sorted(groups.items(), key=lambda kv: kv[0])]


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def apply_transfer_mode(backbone: nn.Module, mode: str, partial_fraction: float = 0.2) -> list[str]:
    """Set ``requires_grad`` on the backbone for ``mode``; return the names that train.

    ``gradual`` is frozen here too: Lightning's BackboneFinetuning unfreezes it later.
    """
    if mode in ("fine_tune", "scratch"):
        for p in backbone.parameters():
            p.requires_grad_(True)
        return [n for n, _ in backbone.named_parameters()]
    freeze(backbone)
    if mode != "partial":
        return []
    groups = layer_groups(backbone)
    n_train = max(1, round(len(groups) * float(partial_fraction)))
    trainable = [name for group in groups[-n_train:] for name in group]
    params = dict(backbone.named_parameters())
    for name in trainable:
        params[name].requires_grad_(True)
    return trainable


def freeze_frozen_batchnorm(backbone: nn.Module) -> None:
    """Keep BatchNorm layers with no trainable parameters in eval mode, so statistics don't move."""
    for m in backbone.modules():
        if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


class HeadFirstFinetuning(BackboneFinetuning):
    """Lightning's BackboneFinetuning, but BatchNorm stays frozen too until the unfreeze epoch.

    The stock callback freezes the backbone with ``train_bn=True``, so BatchNorm affine
    parameters would train during the head-only phase.
    """

    def freeze_before_training(self, pl_module: Any) -> None:
        self.freeze(pl_module.backbone, train_bn=False)
