"""Saliency maps for art classifiers: which pixels an ImageNet network and an art-tuned one use.

- ``explain(model, x, method)``: one map, by method name (``method_names()``);
- ``load_models(specs)``: ``imagenet``, ``imagenet:<timm name>``, arttl checkpoints, weight files;
- ``compare_models(models, images, CompareOptions(method=...))`` (or ``method=...`` as a
  keyword): maps of every model on every image, on one grid (``alignment``), agreement
  numbers (Spearman, top-10 % IoU) and deletion-curve faithfulness (``agreement``);
- ``write_outputs(comparison, out_dir)``: figure PNGs, raw maps (.npz) and the agreement CSV.
"""

from arttl.explain.agreement import (
    agreement_table,
    deletion_curve,
    random_deletion_curve,
    spearman,
    top_iou,
)
from arttl.explain.compare import CompareOptions, Comparison, compare_models
from arttl.explain.figure import comparison_figure, save_maps, write_outputs
from arttl.explain.inputs import list_images
from arttl.explain.methods import METHODS, Explanation, explain, feature_stages, method_names
from arttl.explain.models import ExplainedModel, load_model, load_models

__all__ = [
    "METHODS",
    "CompareOptions",
    "Comparison",
    "ExplainedModel",
    "Explanation",
    "agreement_table",
    "compare_models",
    "comparison_figure",
    "deletion_curve",
    "explain",
    "feature_stages",
    "list_images",
    "load_model",
    "load_models",
    "method_names",
    "random_deletion_curve",
    "save_maps",
    "spearman",
    "top_iou",
    "write_outputs",
]
