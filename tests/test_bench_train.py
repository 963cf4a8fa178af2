"""benchmarks/bench_train.py on a tiny config: the report's fields exist and are consistent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_SYNTHETIC, load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
STEPS, BATCH = 2, 4


@pytest.fixture(scope="module")
def report(tiny_synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    bench = load_script(SCRIPT)
    bench.main(["--device", "cpu", "--steps", str(STEPS), "--rounds", "2", "--warmup", "1",
                "--batch-size", str(BATCH), "--num-workers", "0", "--threads", "1", "--crop-seconds", "1",
                "--root", str(tiny_synthetic_root), "--cache-dir", str(out / "cache"),
                "--corpus-options", json.dumps(TINY_SYNTHETIC), "--backbone-options", '{"channels": [8, 16]}',
                "--store-workers", "0", "--out", str(out)])
    return out


def test_json_has_every_pipeline_with_sane_values(report):
    data = json.loads((report / "bench_train_cpu.json").read_text())
    assert {"cpu_model", "usable_cores", "torch", "device"} <= set(data["hardware"])
    rows = {r["pipeline"]: r for r in data["results"]}
    assert set(rows) == {"lightning_ser", "lightning_ser_matched", "per_item_baseline"}
    for name, r in rows.items():
        assert r["measured_steps"] == STEPS  # split over the rounds, then summed
        assert len(r["samples_per_s_per_round"]) == 2
        assert r["samples_per_s"] > 0 and r["step_ms"] > 0 and r["peak_memory_mb"] > 0
        assert r["worker_cpu_ms_per_sample"] > 0
        for key in ("data_stall_fraction", "augmentation_share", "compute_share"):
            assert 0.0 <= r[key] <= 1.0, (name, key, r[key])
        # waiting + device-side augmentation + compute make up the whole step
        assert r["data_stall_fraction"] + r["augmentation_share"] + r["compute_share"] == pytest.approx(1.0, abs=1e-6)
        # audio per second cannot exceed samples per second × the crop length
        assert 0 < r["audio_hours_per_s"] * 3600 <= r["samples_per_s"] * 1.0 + 1e-9
    assert rows["per_item_baseline"]["augmentation_share"] == 0.0  # augments in its Dataset
    assert rows["lightning_ser"]["augmentation_share"] > 0.0  # features + augmentation in the device hook


def test_markdown_summary_lists_each_pipeline(report):
    md = (report / "bench_train_cpu.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| pipeline | samples/s |")
    assert [ln.split("|")[1].strip() for ln in table[1:]] == ["lightning_ser", "lightning_ser_matched",
                                                             "per_item_baseline"]
    assert table[-1].rstrip().endswith("| 1.00× |")  # the baseline against itself
