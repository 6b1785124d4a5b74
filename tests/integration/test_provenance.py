"""Every silent reuse that made arttl report the wrong numbers, now loud or correct (issue 10).

Real images throughout, all carried by the repository (data/demo): the AHE photographs, the
WikiArt paintings and the Egyptian museum objects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arttl.data import features as features_mod
from arttl.errors import ConfigError
from arttl.inference.evaluation import evaluate_checkpoint
from arttl.training.run import run_training
from tests.fixtures.training import compose_train

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
DEMO = REPO / "data" / "demo" / "images"
PAINTINGS = REPO / "data" / "demo" / "paintings"
OBJECTS = REPO / "data" / "demo" / "objects"


def real_subset(dst: Path, src: Path, classes: list[str], n: int) -> Path:
    """``n`` real images of each class copied from ``src`` (a ``<class>/<image>`` tree)."""
    for cls in classes:
        (dst / cls).mkdir(parents=True)
        for path in sorted((src / cls).iterdir())[:n]:
            shutil.copy(path, dst / cls / path.name)
    return dst


def train(root: Path, data: Path, *extra: str, run: str = "run") -> dict:
    cfg = compose_train(
        root,
        "dataset=imagefolder",
        f"dataset.root={data}",
        "trainer.max_epochs=1",
        "backbone.image_size=32",
        f"run_dir={root}/{run}",
        *extra,
    )
    return run_training(cfg, cfg.run_dir)


def test_two_collections_trained_in_turn_each_use_their_own_store(tmp_path):
    a = real_subset(
        tmp_path / "wikiart", PAINTINGS, ["Baroque", "Expressionism", "Impressionism"], 10
    )
    b = real_subset(
        tmp_path / "egypt", OBJECTS, ["Jewellery", "Pottery", "Reliefs", "Statuary"], 10
    )
    first = train(tmp_path, a, run="a")
    second = train(tmp_path, b, run="b")
    assert first["num_classes"] == 3 and second["num_classes"] == 4
    assert sum(first["samples"].values()) == 30 and sum(second["samples"].values()) == 40
    assert first["store"]["dir"] != second["store"]["dir"]
    assert second["store"]["root"] == str(b.resolve())
    assert first["identity_hash"] != second["identity_hash"]


def test_a_changed_source_rebuilds_the_store(tmp_path, capsys):
    data = real_subset(tmp_path / "raw", DEMO, ["altar", "apse", "vault", "column"], 10)
    before = train(tmp_path, data, run="a")
    assert sum(before["samples"].values()) == 40
    for path in sorted((data / "altar").iterdir())[:3]:
        path.unlink()
    (data / "vault").rename(data / "vaults")
    shutil.copy(DEMO / "dome_inner" / sorted(p.name for p in (DEMO / "dome_inner").iterdir())[0],
                data / "apse" / "new.jpg")  # fmt: skip
    capsys.readouterr()
    after = train(tmp_path, data, run="b")
    out = capsys.readouterr().out
    assert "rebuilding" in out and "added" in out and "removed" in out
    assert sum(after["samples"].values()) == 40 - 3 + 1
    with open(Path(after["store"]["dir"]) / "splits.csv") as f:
        assert "vaults" in f.read()
    assert after["store"]["source_fingerprint"] != before["store"]["source_fingerprint"]


def test_training_seed_does_not_resplit_and_store_settings_are_recorded(tmp_path):
    data = real_subset(tmp_path / "raw", DEMO, ["altar", "apse", "vault"], 10)
    base = train(tmp_path, data, run="a")
    other_seed = train(tmp_path, data, "seed=7", run="b")
    assert other_seed["seed"] == 7 and other_seed["store"]["seed"] == 42
    assert other_seed["store"]["content_hash"] == base["store"]["content_hash"]
    assert other_seed["identity_hash"] == base["identity_hash"]  # seeds of one experiment
    smaller = train(tmp_path, data, "store.shorter_side=48", run="c")
    assert smaller["store"]["shorter_side"] == 48
    assert smaller["store"]["content_hash"] != base["store"]["content_hash"]
    assert smaller["identity_hash"] != base["identity_hash"]


def test_feature_cache_follows_the_store_contents(tmp_path, monkeypatch):
    data = real_subset(tmp_path / "raw", DEMO, ["altar", "apse", "vault"], 10)
    calls = []
    real = features_mod.extract
    monkeypatch.setattr(features_mod, "extract", lambda *a, **k: calls.append(1) or real(*a, **k))
    train(tmp_path, data, "mode=off_the_shelf", run="a")
    train(tmp_path, data, "mode=off_the_shelf", run="b")
    assert len(calls) == 3  # second run: every split from the cache
    # new contents under the same file names
    for cls, donor in (("altar", "gargoyle"), ("apse", "column"), ("vault", "dome_outer")):
        donors = sorted((DEMO / donor).iterdir())
        for target, src in zip(sorted((data / cls).iterdir()), donors, strict=False):
            shutil.copy(src, target)
    train(tmp_path, data, "mode=off_the_shelf", run="c")
    assert len(calls) == 6


def test_evaluate_refuses_a_store_split_differently(tmp_path):
    data = real_subset(tmp_path / "raw", DEMO, ["altar", "apse", "vault", "column"], 12)
    first = train(tmp_path, data, run="a")
    ckpt = first["checkpoint"]  # its own best.ckpt (b replaces the stable copy)
    ok = evaluate_checkpoint(ckpt, tmp_path / "eval0", device="cpu").metrics
    assert ok["same_store_as_training"] is True and ok["split"] == "test"
    train(tmp_path, data, "store.seed=7", run="b")  # the same store folder, re-split
    with pytest.raises(ConfigError, match=r"were in the checkpoint's training data") as err:
        evaluate_checkpoint(ckpt, tmp_path / "eval1", device="cpu")
    own = first["store"]["dir"]  # the message says what changed and how to rebuild it elsewhere
    assert (
        f"{own} is the checkpoint's own store folder, rebuilt since it trained (store.seed: 42 -> 7)"
        in str(err.value)
    )
    hint = str(err.value).split("`")[1]
    assert hint.startswith(
        f"python -m arttl.prepare dataset=imagefolder dataset.root={data} dataset.challenge=class "
    )
    assert "store.seed=42" in hint and "store.shorter_side=null" in hint
    rebuilt = subprocess.run(
        [sys.executable, "-m", "arttl.prepare", *hint.split()[3:], "num_workers=1",
         f"hydra.run.dir={tmp_path}/prep"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    again = evaluate_checkpoint(ckpt, tmp_path / "eval4", store=f"{own}-as-trained", device="cpu")
    assert again.metrics["same_store_as_training"] is True
    assert again.metrics["top1"] == pytest.approx(ok["top1"])
    loud = evaluate_checkpoint(ckpt, tmp_path / "eval2", device="cpu", allow_other_store=True)
    seen = loud.metrics["images_seen_in_training"]
    assert seen["train"] + seen["val"] > 0
    saved = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert saved["images_seen_in_training"] == seen
    train_file = Path(first["store"]["dir"]) / "train.h5"
    with pytest.raises(ConfigError, match=r"holds the 'train' split, not split=test"):
        evaluate_checkpoint(ckpt, tmp_path / "eval3", split="test", store=train_file, device="cpu")


def test_resume_refuses_other_settings(tmp_path):
    data = real_subset(tmp_path / "raw", DEMO, ["altar", "apse", "vault"], 10)
    train(tmp_path, data, run="a")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"backbone.image_size: 32 -> 48"):
        train(tmp_path, data, f"ckpt_path={last}", "backbone.image_size=48", run="b")
    with pytest.raises(ConfigError, match=r"(?s)data.batch_size: 8 -> 4.*mode.optimizer.lr"):
        train(tmp_path, data, f"ckpt_path={last}", "mode.optimizer.lr=0.05",
              "data.batch_size=4", run="c")  # fmt: skip
    more = train(tmp_path, data, f"ckpt_path={last}", "trainer.max_epochs=2", run="d")
    assert more["best_epoch"] is not None


def test_results_json_equals_evaluate_on_real_ten_class_data(tmp_path):
    data = real_subset(tmp_path / "raw", DEMO, sorted(p.name for p in DEMO.iterdir()), 30)
    record = train(tmp_path, data, "trainer.max_epochs=2", "mode=scratch", run="a")
    assert record["num_classes"] == 10
    ev = evaluate_checkpoint(record["checkpoint"], tmp_path / "eval", device="cpu").metrics
    for key in ("top1", "top3", "top5", "macro_top1"):
        assert record["test"][key] == pytest.approx(ev[key], abs=1e-6), key
    assert record["test"]["loss"] == pytest.approx(ev["loss"], abs=1e-5)
    assert ev["top1"] < ev["top3"] < ev["top5"]
    lo, hi = ev["top1_ci95"]
    assert lo < ev["top1"] < hi


def test_bf16_training_reports_the_fp32_metrics_evaluate_computes(tmp_path):
    """Mixed precision trains; the reported val/test metrics are fp32, like `arttl.evaluate`."""
    data = real_subset(tmp_path / "raw", DEMO, ["altar", "apse", "vault", "column", "gargoyle"], 12)
    record = train(tmp_path, data, "trainer.precision=bf16-mixed", "trainer.max_epochs=2")
    assert record["precision"] == "bf16-mixed" and record["eval_precision"] == "32-true"
    ev = evaluate_checkpoint(record["checkpoint"], tmp_path / "eval", device="cpu").metrics
    for key in ("top1", "top3", "macro_top1"):
        assert record["test"][key] == pytest.approx(ev[key], abs=1e-6), key
    assert record["test"]["loss"] == pytest.approx(ev["loss"], abs=1e-5)


def test_a_store_whose_source_is_gone_is_used_only_when_asked(tmp_path, capsys):
    data = real_subset(tmp_path / "raw", DEMO, ["altar", "apse", "vault"], 10)
    first = train(tmp_path, data, run="a")
    data.rename(tmp_path / "moved")
    with pytest.raises(ConfigError, match=r"does not exist.*store.check_source=false"):
        train(tmp_path, data, run="b")
    capsys.readouterr()
    again = train(tmp_path, data, "store.check_source=false", run="c")
    assert "without checking its source" in capsys.readouterr().out
    assert again["store"]["content_hash"] == first["store"]["content_hash"]
