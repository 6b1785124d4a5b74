"""`backbone.weights=imagenet` downloads like timm, end to end, against a local stand-in for the
Hugging Face hub on 127.0.0.1 (no internet): the first build downloads into the HF cache, the
second reads the cache with the server gone, and offline with an empty cache is one clear line.

huggingface_hub reads HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE when it is imported, so every
build runs in a fresh Python with those variables set.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
REPO = "timm/test_resnet.r160_in1k"  # timm's pretrained cfg for `test_resnet` points here
FILE = "model.safetensors"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    """Enough of the hub's file protocol for ``hf_hub_download``: HEAD and GET on
    ``/{repo}/resolve/{revision}/{filename}`` with X-Repo-Commit, ETag and Content-Length; a
    missing file answers 404 with ``X-Error-Code: EntryNotFound`` like the hub."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        path = self.path.split("?")[0]
        repo, sep, rest = path.lstrip("/").partition("/resolve/")
        _, _, filename = rest.partition("/")
        data = self.server.files.get(f"{repo}/{filename}") if sep else None
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if sep else "RepoNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FakeHub, Path]]:
    """The hub serving a test_resnet with its 1000-class head (seeded random weights)."""
    torch.manual_seed(7)
    weights = tmp_path / "served.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), str(weights))
    hub = FakeHub({f"{REPO}/{FILE}": weights.read_bytes()})
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    yield hub, weights
    hub.shutdown()
    hub.server_close()


BUILD = textwrap.dedent(
    """
    import json, sys
    import huggingface_hub.constants
    import torch
    from safetensors.torch import load_file
    from arttl.errors import ConfigError
    from arttl.models.backbone import create_backbone
    from arttl.models.weights import check_pretrained_available

    served = load_file(sys.argv[1])
    for cache in sys.argv[2:]:  # one import of torch/timm for several builds
        huggingface_hub.constants.HF_HUB_CACHE = cache
        try:
            check_pretrained_available("test_resnet", "imagenet")  # the up-front check
            model, config = create_backbone("test_resnet", "imagenet")
        except ConfigError as err:
            print(json.dumps({"error": str(err)}))
            continue
        state = model.state_dict()
        same = all(torch.equal(t, served[k]) for k, t in state.items())
        print(json.dumps({"same": same, "n": len(state), "input_size": list(config["input_size"])}))
    """
)


def _build(
    hub_url: str, caches: list[Path], served: Path, tmp: Path, offline: bool = False
) -> list[dict]:
    """Build test_resnet with `imagenet` once per HF cache folder, in one fresh Python."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env = {
        k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        HF_ENDPOINT=hub_url,
        HF_HOME=str(tmp / "hf_home"),
        HF_HUB_CACHE=str(caches[0]),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="5",
        NO_PROXY="127.0.0.1,localhost",
        ARTTL_CACHE_DIR=str(tmp / "arttl_cache"),
        PYTHONPATH=str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", ""),
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(served), *map(str, caches)],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(caches) :]]


def test_imagenet_downloads_then_reads_the_cache_then_fails_clearly_offline(
    served: tuple[FakeHub, Path], tmp_path: Path
) -> None:
    hub, weights = served
    cache, empty = tmp_path / "hub", tmp_path / "empty"

    # 1. Online, empty cache: downloaded from the (local) hub into the HF cache.
    [first] = _build(hub.url, [cache], weights, tmp_path)
    n_backbone = len(load_file(str(weights))) - 2  # all but the classifier (fc.weight, fc.bias)
    assert first == {"same": True, "n": n_backbone, "input_size": [3, 160, 160]}
    resolve = f"/{REPO}/resolve/main/{FILE}"
    assert ("HEAD", resolve) in hub.requests and ("GET", resolve) in hub.requests
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / FILE
    assert snapshot.read_bytes() == weights.read_bytes()

    # 2. The server is gone: the cache serves, no request is made.
    # 3. Online, hub unreachable, nothing cached: one line naming repo, file and the fix.
    hub.shutdown()
    hub.server_close()
    before = len(hub.requests)
    second, unreachable = _build(hub.url, [cache, empty], weights, tmp_path)
    assert second["same"] is True and len(hub.requests) == before
    message = unreachable["error"]
    assert "\n" not in message
    assert (
        f"could not download the weights of 'test_resnet.r160_in1k' (hub repo {REPO}, file {FILE}) "
        f"from {hub.url}" in message
    )
    assert "backbone.weights=/path/model.safetensors" in message

    # 4. HF_HUB_OFFLINE=1 with an empty cache: refused by the up-front check, one line.
    # 5. HF_HUB_OFFLINE=1 with the cache from step 1: works.
    offline, cached = _build(hub.url, [empty, cache], weights, tmp_path, offline=True)
    message = offline["error"]
    assert "\n" not in message
    assert message.startswith("backbone.weights=imagenet: no ImageNet weights for 'test_resnet'")
    assert f"HF_HUB_OFFLINE=1 forbids downloading them (hub repo {REPO}, file {FILE})" in message
    assert f"`hf download {REPO} {FILE}`" in message
    assert "backbone.weights=/path/model.safetensors" in message
    assert cached["same"] is True
