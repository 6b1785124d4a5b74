"""docs/results.md: its tables are the files arttl wrote, and `make reproduce` says what it needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "docs" / "build_results_page.py"
PAGE = REPO / "docs" / "results.md"
INCLUDE = re.compile(r"<!-- include (\S+)(?: columns=\S+)? -->\n(.*?)<!-- end include -->", re.S)


def build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUILDER), *args], capture_output=True, text=True, check=False
    )


def test_reproduce_without_the_shared_data_says_which_folders_and_where_from(tmp_path):
    env = {**os.environ, "DATA": str(tmp_path / "nowhere"), "PY": sys.executable}
    done = subprocess.run(
        ["bash", "docs/reproduce.sh"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stdout + done.stderr
    for need in ("wikiart224/train_val", "egypt224/metadata.csv", "ahe64/train_val"):
        assert f"{tmp_path}/nowhere/{need}" in done.stderr
    assert "make reproduce DATA=" in done.stderr and "README" in done.stderr
    assert "== " not in done.stdout  # nothing ran


def test_builder_splices_files_and_check_finds_a_stale_page(tmp_path):
    (tmp_path / "r" / "a").mkdir(parents=True)
    (tmp_path / "r" / "a" / "report.md").write_text(
        "# arttl report\n\n| x |\n|--:|\n| 71.00 |\n\n![curves](curves_a.png) [CSV](t.csv)\n"
    )
    pd.DataFrame({"image": ["1.jpg"], "spearman": [0.12345], "other": [1]}).to_csv(
        tmp_path / "r" / "a" / "agreement.csv", index=False
    )
    page = tmp_path / "page.md"
    page.write_text(
        "# Results\n<!-- include r/a/report.md -->\nold numbers\n<!-- end include -->\n"
        "<!-- include r/a/agreement.csv columns=image,spearman -->\n<!-- end include -->\n"
    )
    assert build("--page", str(page), "--results", str(tmp_path / "r"), "--check").returncode == 1
    assert build("--page", str(page), "--results", str(tmp_path / "r")).returncode == 0
    text = page.read_text()
    assert "old numbers" not in text and "| 71.00 |" in text
    assert "### arttl report" in text  # nested under the page's own headings
    assert "](r/a/curves_a.png)" in text and "](r/a/t.csv)" in text  # links still resolve
    assert "0.123" in text and "other" not in text
    assert build("--page", str(page), "--results", str(tmp_path / "r"), "--check").returncode == 0
    (tmp_path / "r" / "a" / "report.md").write_text("# arttl report\n\n| 72.00 |\n")
    stale = build("--page", str(page), "--results", str(tmp_path / "r"), "--check")
    assert stale.returncode == 1 and "stale" in stale.stderr
    (tmp_path / "r" / "a" / "report.md").unlink()
    missing = build("--page", str(page), "--results", str(tmp_path / "r"))
    assert missing.returncode != 0 and "make reproduce" in missing.stderr


def test_the_results_page_shows_the_files_arttl_wrote_not_copied_numbers():
    done = build("--page", str(PAGE), "--results", str(REPO / "docs" / "results"), "--check")
    assert done.returncode == 0, done.stderr
    text = PAGE.read_text(encoding="utf-8")
    included = [m.group(1) for m in INCLUDE.finditer(text)]
    for report in ("wikiart", "objects", "ahe", "met", "multitask"):
        assert f"results/{report}/report.md" in included
    # multi-task against a network per field, paired on the same test images
    diffs = pd.read_csv(REPO / "docs" / "results" / "multitask" / "differences.csv")
    paired = diffs[diffs["kind"] == "multitask-single_task"]
    assert set(paired["challenge"]) == {"type", "material", "period"} and (paired["n"] == 3).all()
    assert "Total training time" in (REPO / "docs/results/multitask/multitask.md").read_text()
    for figure in ("saliency_paintings", "saliency_objects"):
        assert f"results/{figure}/agreement_visual_backprop.csv" in included
        assert f"results/{figure}/saliency_visual_backprop.png" in text
        assert (REPO / "docs" / "results" / figure / "saliency_visual_backprop.png").is_file()
    assert "results/durations.csv" in included and "results/spot_check.csv" in included
    checks = pd.read_csv(REPO / "docs" / "results" / "spot_check.csv")
    assert len(checks) >= 4  # an independent recomputation agrees with every checked cell
    assert {"type", "material", "period"} <= set(checks["task"].dropna())  # a multi-task run
    assert (checks["recomputed_top1"] - checks["results_json_top1"]).abs().max() < 1e-3
    # Every table row outside the included files is the paper's own (quoted, not measured).
    outside = INCLUDE.sub("", text)
    outside = re.sub(r"<!-- paper -->.*?<!-- end paper -->", "", outside, flags=re.S)
    rows = [line for line in outside.splitlines() if line.lstrip().startswith("|")]
    assert rows == [], rows
    for image in re.findall(r"\]\(([^)]+\.png)\)", text):
        assert (PAGE.parent / image).is_file(), image
