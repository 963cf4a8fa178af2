"""benchmarks/bench_accuracy.py on a tiny corpus: two folds trained in parallel processes, the
baseline on the same folds, and the report's numbers consistent with each other."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_SYNTHETIC, load_script

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_accuracy.py"


@pytest.fixture(scope="module")
def report(tiny_synthetic_root, tmp_path_factory):
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("bench_accuracy")
    recipe = out / "recipe.yaml"
    recipe.write_text(
        "data:\n  protocol: loso\n  batch_size: 4\n  crop_seconds: 1.0\n  num_workers: 0\n  store_workers: 0\n"
        f"  corpus_options: {json.dumps(TINY_SYNTHETIC)}\n"
        "model:\n  backbone_options: {channels: [8, 16]}\ntrainer:\n  max_epochs: 1\n")
    bench = load_script(SCRIPT)
    bench.main(["--corpus", "synthetic", "--root", str(tiny_synthetic_root), "--cache-dir", str(out / "cache"),
                "--recipe", str(recipe), "--folds", "0,1", "--jobs", "2", "--out", str(out)])
    return json.loads((out / "accuracy_synthetic.json").read_text()), (out / "accuracy_synthetic.md").read_text()


def test_every_fold_of_the_recipe_and_the_baseline_is_reported_on_the_same_speakers(report):
    data, md = report
    (recipe,) = data["recipes"]
    folds = [r["fold"] for r in recipe["folds"]]
    assert len(folds) == 2 and len(set(folds)) == 2  # parallel folds did not collapse into one run
    for mode in ("global", "speaker"):
        assert [r["fold"] for r in data["baseline"][mode]["folds"]] == folds
    for r in recipe["folds"] + data["baseline"]["global"]["folds"]:
        assert 0.0 <= r["ua"] <= 1.0 and 0.0 <= r["wa"] <= 1.0 and 0.0 <= r["f1"] <= 1.0
    uas = [r["ua"] for r in recipe["folds"]]
    assert recipe["ua_mean"] == pytest.approx(np.mean(uas)) and recipe["min_ua"] == min(uas)
    assert recipe["ua_std"] == pytest.approx(np.std(uas, ddof=1))
    assert all(r["seconds"] > 0 for r in recipe["folds"]) and data["jobs"] == 2
    assert data["command"].startswith("python benchmarks/bench_accuracy.py --corpus synthetic")
    for fold in folds:
        assert f"| {fold} |" in md
    assert "mean ± std" in md and "lowest fold UA" in md
    hw = data["hardware"]
    assert f"- hardware: {hw.get('gpu') or hw['cpu_model']}, {hw['usable_cores']} cores, load average" in md
