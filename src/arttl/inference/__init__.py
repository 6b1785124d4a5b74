"""From a checkpoint to answers: evaluation on a split, prediction on new images, export."""
