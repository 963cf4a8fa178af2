"""benchmarks/bench_fusion.py without trained runs: its report and its refusal of an empty folder."""
from pathlib import Path

import pytest

from conftest import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_fusion.py"


def test_an_empty_runs_folder_is_refused_with_its_path(tmp_path):
    bench = load_script(SCRIPT)
    with pytest.raises(SystemExit, match=str(tmp_path)):
        bench.main(["--runs", str(tmp_path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_the_table_lists_every_fold_and_the_three_columns():
    bench = load_script(SCRIPT)
    folds = [{"fold": f"loso-x:{k}", "network": 0.5 + k / 10, "functionals_lr": 0.6, "fused": 0.7 + k / 100}
             for k in range(3)]
    summary = {f"{c}_{s}": v for c in ("network", "functionals_lr", "fused") for s, v in
               (("mean", 0.1), ("std", 0.2), ("min", 0.3))}
    text = bench.markdown({"corpus": "x", "command": "python benchmarks/bench_fusion.py --runs R",
                           "recipes": {"recipe1": {"normalisation": "speaker", "folds": folds, **summary}}})
    assert "## recipe1 (speaker normalisation)" in text
    for k in range(3):
        assert f"| loso-x:{k} | {0.5 + k / 10:.3f} | 0.600 | {0.7 + k / 100:.3f} |" in text
    assert "| mean ± std | 0.100 ± 0.200 | 0.100 ± 0.200 | 0.100 ± 0.200 |" in text
