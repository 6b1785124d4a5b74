"""Where the Hydra configs live, for entry points and tests that compose them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omegaconf import OmegaConf

from arttl.data.tasks import challenge_name

# A checkout (and an editable install) reads conf/ and data/demo/ beside src/; a wheel carries
# copies of both in arttl/_bundle/ (setup.py copies them at build time), laid out the same way.
_CHECKOUT_DIR = Path(__file__).resolve().parents[2]
BUNDLE_DIR = Path(__file__).resolve().parent / "_bundle"
REPO_DIR = _CHECKOUT_DIR if (_CHECKOUT_DIR / "conf" / "train.yaml").is_file() else BUNDLE_DIR
CONF_DIR = REPO_DIR / "conf"

# ${arttl_repo:} in a config: the checkout's root (or the wheel's bundle), so embedded data
# (data/demo) is found whatever folder a command is launched from.
OmegaConf.register_new_resolver("arttl_repo", lambda: str(REPO_DIR), replace=True)


def source_tag(root: object) -> str:
    """A readable, collision-free folder name for a source: its last two folders + a path hash."""
    if root in (None, "", "???"):
        return "none"
    text = str(root)
    # A folder is named by its absolute path; a hub id (owner/name) or glob that is no folder
    # by the text itself, so the store's name does not depend on the launch folder.
    path = Path(text).expanduser()
    path = path.resolve() if path.exists() or not _looks_remote(text) else Path(text)
    readable = "-".join(p for p in path.parts[-2:] if p not in ("/", ""))
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable)[:48] or "root"
    return f"{readable}-{hashlib.sha256(str(path).encode()).hexdigest()[:6]}"


def _looks_remote(text: str) -> bool:
    return not text.startswith((".", "/", "~")) or any(c in text for c in "*?[")


# ${arttl_source_tag:${dataset.root}}: stores of different collections never share a folder.
OmegaConf.register_new_resolver("arttl_source_tag", source_tag, replace=True)
# ${arttl_challenge:${dataset.challenge}}: one task's name, or several joined ("type+material").
OmegaConf.register_new_resolver("arttl_challenge", challenge_name, replace=True)
# ${arttl_or:${out_dir},outputs/...}: a command's run folder is the out_dir it was given, so its
# log and .hydra/ sit beside what it wrote (oc.select gives null for a null value, not the default)
OmegaConf.register_new_resolver(
    "arttl_or", lambda value, default: default if value is None else value, replace=True
)
