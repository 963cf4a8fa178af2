"""scripts/gpu_check.sh: without CUDA it checks that every step's command parses and exits 0;
a step whose arguments do not parse fails the check."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent


def _module():
    return load_script(ROOT / "scripts" / "gpu_check.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script measures instead")
def test_without_cuda_every_step_parses_and_the_script_exits_0(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA on this machine: dry run only" in proc.stdout
    for step in ("pytest -m gpu", "bench_augment", "bench_augment --banks", "bench_train", "fit 1 epoch",
                 "bench_augment_dali"):
        assert f"ok     {step}" in proc.stdout
    assert not (tmp_path / "summary.md").exists()  # nothing measured


def test_a_step_that_does_not_parse_fails_the_dry_run(tmp_path, monkeypatch, capsys):
    gc = _module()
    real = gc.steps

    def broken(args, out):
        todo = real(args, out)
        bench = next(s for s in todo if s.name == "bench_augment")
        bench.parse = (bench.parse[0], bench.parse[1] + ["--batches", "many"])
        return [s for s in todo if s.name in ("bench_augment", "bench_train")]

    monkeypatch.setattr(gc, "steps", broken)
    assert gc.main(["--dry-run", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED bench_augment" in out and "ok     bench_train" in out


def test_gpu_test_files_are_the_ones_with_gpu_tests():
    files = _module().gpu_test_files()
    assert "tests/test_gpu.py" in files and "tests/test_augment_pipeline.py" in files
    assert "tests/test_codec.py" not in files  # needs PyAV, which a bare GPU image may lack
    for f in files:
        assert "mark.gpu" in (ROOT / f).read_text()


def test_summary_reads_the_benchmark_results(tmp_path):
    gc = _module()
    (tmp_path / "bench_train_cuda.json").write_text(
        '{"results": [{"pipeline": "lightning_ser", "samples_per_s": 5000.0, "data_stall_fraction": 0.02, '
        '"augmentation_share": 0.1, "peak_memory_mb": 3000}]}')
    line = gc.key_numbers("bench_train", tmp_path, "cuda", "")
    assert line == "lightning_ser: 5,000 samples/s, stall 2.0%, aug 10.0%, peak 3,000 MB"
    assert gc.key_numbers("pytest -m gpu", tmp_path, "cuda", "== 7 passed, 2 skipped in 3s ==") == "7 passed, 2 skipped"
    fit_log = "GPU available: True (cuda), used: True\n│ test/emotion/ua │ 0.4375 │"
    assert gc.key_numbers("fit 1 epoch", tmp_path, "cuda", fit_log) == "test UA 0.438, GPU used"
    sys.modules.pop("gpu_check", None)
