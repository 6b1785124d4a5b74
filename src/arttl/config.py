"""Where the Hydra configs live, for entry points and tests that compose them."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

# conf/ sits beside src/ in the fixed project layout (the package is installed editable).
REPO_DIR = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_DIR / "conf"

# ${arttl_repo:} in a config: the checkout's root, so embedded data (data/demo) is found
# whatever folder a command is launched from.
OmegaConf.register_new_resolver("arttl_repo", lambda: str(REPO_DIR), replace=True)
