"""Late fusion of trained fold networks with the functionals baseline (a measurement, not a recipe).

``bench_accuracy.py`` keeps each fold's run under ``/tmp/bench_accuracy_*/recipeN-foldK/version_0``
(``config.yaml`` and ``checkpoints/last.ckpt``). For each such fold this script tests the
checkpoint again (``lightning_ser test``, recording each test utterance's emotion posteriors),
fits the functionals + logistic-regression baseline on the same fold's training and validation
speakers (:mod:`lightning_ser.baseline`, with the run's normalisation: per speaker when the run
used ``normalize: speaker``, else global) and scores three predictions on the held-out speaker:
the network alone, the baseline alone, and the mean of their posteriors. All three columns use
the baseline's UA: mean recall over the classes in the speaker's labels. The network's own test
metric (torchmetrics) also counts a class that the speaker lacks but the network predicts, with
recall 0, so on a speaker missing a class its UA there is lower (EmoDB speaker 08: 0.565 against
0.660 here).

usage:
  python benchmarks/bench_fusion.py --runs /tmp/bench_accuracy_XXXX [--corpus emodb] [--out DIR]

Writes ``fusion_<corpus>.json`` and ``.md`` under ``--out`` (default ``benchmarks/results``).
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `hardware` also when loaded by path
from bench_accuracy import functionals_table, mean_std  # noqa: E402
from hardware import describe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="a bench_accuracy run folder (recipeN-foldK inside)")
    ap.add_argument("--corpus", default="emodb")
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap


def record_posteriors(run: Path, out: Path) -> None:
    """Test one fold's ``last.ckpt`` (``lightning_ser test``) and save each test utterance's store
    row and emotion posteriors ``(C,)`` to ``out`` (``.npz``). Runs in a process of its own, as each
    fold of ``bench_accuracy`` does."""
    from lightning_ser.cli import run_lightning
    from lightning_ser.module import SERModule

    records: list[tuple[np.ndarray, np.ndarray]] = []
    original = SERModule._eval_step

    def eval_step(module, split, batch, dataloader_idx, tta):
        if split == "test":
            with torch.no_grad():
                scores, _ = module.score_batch(batch, tta=tta)
            records.append((batch["index"].cpu().numpy(), scores["emotion"].float().cpu().numpy()))
        return original(module, split, batch, dataloader_idx, tta)

    SERModule._eval_step = eval_step
    run_lightning(["test", "-c", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                   "--trainer.logger", "false", "--trainer.callbacks", "null",
                   "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    np.savez(out, rows=np.concatenate([r for r, _ in records]), probs=np.concatenate([p for _, p in records]))


def test_posteriors(run: Path, tmp: Path) -> dict[int, np.ndarray]:
    """Store row → emotion posteriors for one fold's run, from a fresh process."""
    out = tmp / f"{run.parent.name}.npz"
    code = subprocess.call([sys.executable, __file__, "--posteriors", str(run), str(out)],
                           stdout=subprocess.DEVNULL)
    if code != 0:
        raise RuntimeError(f"testing {run} failed (exit status {code})")
    saved = np.load(out)
    return {int(r): p for r, p in zip(saved["rows"], saved["probs"])}


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    from lightning_ser.baseline import fit_predict_proba, unweighted_recall
    from lightning_ser.cli import run_lightning

    hardware = describe()
    runs = sorted(args.runs.glob("recipe*-fold*/version_0"),
                  key=lambda p: tuple(map(int, re.findall(r"\d+", p.parent.name))))
    if not runs:
        raise SystemExit(f"no recipeN-foldK/version_0 folders under {args.runs}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_fusion_"))
    cache: dict = {}
    by_recipe: dict[str, list[dict]] = {}
    for run in runs:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        data = cfg["data"]
        mode = "speaker" if (data.get("features") or {}).get("normalize") == "speaker" else "global"
        key = (data["corpus"], data["root"])
        if key not in cache:  # functionals of every utterance, once per corpus
            dm = run_lightning(["--data.corpus", data["corpus"], "--data.root", data["root"], "--data.cache_dir",
                                data["cache_dir"], "--data.protocol", data["protocol"], "--trainer.logger", "false"],
                               run=False).datamodule
            table = functionals_table(dm)  # sets the datamodule up
            cache[key] = (np.asarray(dm.catalogue.rows), *table)
        rows, x, y, speakers, splits = cache[key]
        split = splits[int(data["fold"])]
        train, test = np.array(split.train + split.val), np.array(split.test)
        p_lr = fit_predict_proba(x, y, speakers, train, test, mode)
        posteriors = test_posteriors(run, tmp)
        p_net = np.stack([posteriors[int(rows[i])] for i in test])
        yt = y[test]
        row = {"fold": split.name, "normalisation": mode, "network": unweighted_recall(yt, p_net.argmax(1)),
               "functionals_lr": unweighted_recall(yt, p_lr.argmax(1)),
               "fused": unweighted_recall(yt, (p_net + p_lr).argmax(1))}
        print(f"[bench_fusion] {run.parent.name} {row}", flush=True)
        by_recipe.setdefault(run.parent.name.split("-")[0], []).append(row)
    report = {"benchmark": "bench_fusion", "corpus": args.corpus,
              "command": "python benchmarks/bench_fusion.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "hardware": hardware, "recipes": {}}
    for name, rows_ in by_recipe.items():
        summary = {}
        for col in ("network", "functionals_lr", "fused"):
            summary[col + "_mean"], summary[col + "_std"] = mean_std([r[col] for r in rows_])
            summary[col + "_min"] = min(r[col] for r in rows_)
        report["recipes"][name] = {"normalisation": rows_[0]["normalisation"], "folds": rows_, **summary}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"fusion_{args.corpus}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"fusion_{args.corpus}.md").write_text(markdown(report))
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"# Late fusion on {report['corpus']}: fold networks + functionals baseline", "",
             f"`{report['command']}`", "",
             "Test UA per held-out speaker: the fold's network alone (its `last.ckpt`), the functionals + "
             "logistic-regression baseline alone, and the mean of their posteriors.", ""]
    for name, r in report["recipes"].items():
        lines += [f"## {name} ({r['normalisation']} normalisation)", "", "| fold | network | functionals + LR | fused |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {f['fold']} | {f['network']:.3f} | {f['functionals_lr']:.3f} | {f['fused']:.3f} |" for f in r["folds"]]
        lines.append("| mean ± std | " + " | ".join(f"{r[c + '_mean']:.3f} ± {r[c + '_std']:.3f}"
                                                  for c in ("network", "functionals_lr", "fused")) + " |")
        lines.append("| lowest fold | " + " | ".join(f"{r[c + '_min']:.3f}" for c in ("network", "functionals_lr", "fused")) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--posteriors"]:
        record_posteriors(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
