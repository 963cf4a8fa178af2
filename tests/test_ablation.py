"""scripts/ablation.py: condition expansion, macro metrics, and a quick run of two conditions."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablation.py"
CELL = re.compile(r"^\d\.\d{3} ± \d\.\d{3}$")


@pytest.fixture(scope="module")
def ablation():
    return load_script(SCRIPT)


def test_codec_expands_to_one_condition_per_bitrate(ablation):
    assert ablation.expand_conditions(["single", "codec", "specaugment"], [8, 64]) == \
        ["single", "codec:opus_8k", "codec:opus_64k", "specaugment"]
    assert ablation.expand_conditions(["codec:opus_32k"], [8]) == ["codec:opus_32k"]
    with pytest.raises(ValueError, match="triple"):
        ablation.expand_conditions(["triple"], [8])


def test_macro_precision_and_recall_are_class_means(ablation):
    row = {"fold": "fold0", "test/emotion/ua": 0.5, "test/emotion/wa": 0.6, "test/emotion/f1": 0.4,
           "test/emotion/precision/happy": 1.0, "test/emotion/precision/sad": 0.0, "test/emotion/precision/angry": 0.5,
           "test/emotion/recall/happy": 0.25, "test/emotion/recall/sad": 0.75, "test/emotion/recall/angry": 0.5,
           "test/gender/acc": 0.9}
    m = ablation.fold_metrics(row)
    assert m == pytest.approx({"ua": 0.5, "wa": 0.6, "f1": 0.4, "precision": 0.5, "recall": 0.5})
    del row["test/emotion/precision/happy"], row["test/emotion/precision/sad"], row["test/emotion/precision/angry"]
    with pytest.raises(KeyError, match="precision"):
        ablation.fold_metrics(row)


@pytest.fixture(scope="module")
def quick_run(ablation, tiny_synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    report = ablation.main(["--quick", "--conditions", "single,codec", "--bitrates", "8",
                            "--cache-dir", str(out / "cache"), "--out", str(out),
                            "--", "--data.root", str(tiny_synthetic_root)])  # the quick corpus, already on disk
    return ablation, report, out


def test_quick_run_reports_every_condition_over_two_folds(quick_run):
    ablation, report, out = quick_run
    assert report["conditions"] == ["single", "codec:opus_8k"] and report["folds"] == [0, 1]
    for cond, rows in report["per_fold"].items():
        assert len({r["fold"] for r in rows}) == 2, cond
        for r in rows:
            values = ablation.fold_metrics(r)
            assert all(0.0 <= v <= 1.0 for v in values.values()), (cond, values)
        mean = sum(ablation.fold_metrics(r)["precision"] for r in rows) / 2
        assert report["summary"][cond]["precision"]["mean"] == pytest.approx(mean)
    assert json.loads((out / "ablation.json").read_text())["summary"] == report["summary"]
    # the codec condition trained against a store with that variant built
    variants = list((out / "cache" / "stores").glob("store-*/variants/opus_8k.int16"))
    assert len(variants) == 1


def test_quick_run_table_structure(quick_run):
    _, report, out = quick_run
    md = (out / "ablation.md").read_text()
    assert "scripts/ablation.py --quick" in md  # the command that made it
    lines = md[md.index("| condition |"):].splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == ["condition", "folds", "UA", "WA", "macro-F1", "precision (macro)", "recall (macro)"]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:4]]
    assert [r[0] for r in rows] == ["single", "codec:opus_8k"] and all(r[1] == "2" for r in rows)
    assert all(CELL.match(c) for r in rows for c in r[2:]), rows
    per_fold_head = next(ln for ln in lines if ln.startswith("| condition | fold0"))
    assert [c.strip() for c in per_fold_head.strip("|").split("|")] == ["condition", "fold0", "fold1"]
