"""From many results.json to the paper's tables and learning curves."""
