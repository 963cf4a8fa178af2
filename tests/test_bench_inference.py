"""benchmarks/bench_inference.py on tiny sizes: the report's fields exist and are consistent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_inference.py"
CLIPS, CLIP_S, LONG_S, BATCHES = 3, 1.0, 9.0, (1, 2)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    bench = load_script(SCRIPT)
    bench.main(["--device", "cpu", "--threads", "1", "--clips", str(CLIPS), "--clip-seconds", str(CLIP_S),
                "--batch-sizes", ",".join(map(str, BATCHES)), "--long-seconds", str(LONG_S),
                "--repeats", "2", "--out", str(out)])
    return out


def test_json_has_each_workload_with_consistent_speeds(report):
    data = json.loads((report / "bench_inference_cpu.json").read_text())
    hw = data["hardware"]  # benchmarks/hardware.py's canonical keys
    assert {"device", "cpu_model", "cpu_count", "usable_cores", "torch_threads", "load_avg_at_start", "memory_gb",
            "platform", "python", "torch"} <= set(hw)
    assert hw["device"] == "cpu" and hw["torch_threads"] == 1 and "gpu" not in hw
    assert data["command"].startswith("python benchmarks/bench_inference.py --device cpu")
    assert data["model"]["network"] == "attention_cnn" and data["model"]["params"] > 100_000
    rows = data["results"]
    assert [(r["workload"], r["window_batch"]) for r in rows] == [("short", b) for b in BATCHES] + [("long", 32)]
    for r in rows:
        assert len(r["wall_seconds_per_repeat"]) == 2 and r["wall_seconds"] > 0
        assert r["x_realtime"] == pytest.approx(r["audio_seconds"] / r["wall_seconds"])
        assert r["x_realtime"] * r["rtf"] == pytest.approx(1.0)
        assert r["peak_rss_mb"] >= r["rss_before_mb"] > 50  # torch alone is more than 50 MB
    short, long = rows[0], rows[-1]
    assert (short["files"], short["audio_seconds"], short["windows"]) == (CLIPS, CLIPS * CLIP_S, CLIPS)
    # 9 s = 901 frames: windows of 400 frames every 200 → 1 + ceil(501 / 200) = 4
    assert (long["files"], long["audio_seconds"], long["windows"]) == (1, LONG_S, 4)


def test_markdown_lists_each_workload(report):
    md = (report / "bench_inference_cpu.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| workload | files | audio s | window batch |")
    assert [ln.split("|")[1].strip() for ln in table[1:]] == ["1 s clips", "1 s clips", "one 9 s file"]
    assert "bench_inference.py --device cpu --threads 1" in md
