"""Where the Hydra configs live, for entry points and tests that compose them."""

from __future__ import annotations

from pathlib import Path

# conf/ sits beside src/ in the fixed project layout (the package is installed editable).
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
