"""Saliency maps for art classifiers: which pixels an ImageNet network and an art-tuned one use.

- ``explain(model, x, method)``: one map, by method name (``method_names()``);
- ``load_models(specs)``: ``imagenet``, ``imagenet:<timm name>``, arttl checkpoints, weight files;
- ``compare_models(models, images, method)``: maps of every model on every image, agreement
  numbers (Spearman, top-10 % IoU) and deletion-curve faithfulness;
- ``write_outputs(comparison, out_dir)``: figure PNGs, raw maps (.npz) and the agreement CSV.
"""

from arttl.explain.compare import (
    Comparison,
    agreement_table,
    compare_models,
    deletion_curve,
    list_images,
    random_deletion_curve,
    spearman,
    top_iou,
)
from arttl.explain.figure import comparison_figure, save_maps, write_outputs
from arttl.explain.methods import METHODS, Explanation, explain, feature_stages, method_names
from arttl.explain.models import ExplainedModel, load_model, load_models

__all__ = [
    "METHODS",
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
