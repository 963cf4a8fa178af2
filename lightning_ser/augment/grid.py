"""Look at what the augmentations do: a PNG grid, one row per sample, one column per op.

Column 0 is the plain (eval) log-mel; every further column applies one op of the pipeline alone,
forced on (``p=1``) with the parameters that op draws for that sample and epoch.

CLI (synthetic chirps/tones, no corpus needed)::

    python -m lightning_ser.augment.grid --out grid.png [--policy ser] [--epoch 0] [--seed 0] \
        [--noise DIR_OR_MANIFEST ...] [--rir DIR_OR_MANIFEST ...]

``--noise`` / ``--rir`` load banks for ``noise_file`` and ``reverb`` (e.g. ``--policy robust``).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch
from torch import Tensor

from .pipeline import FeaturePipeline


def describe_params(params, i: int) -> str:
    """Short text of sample ``i``'s scalar params, e.g. ``db=+3.1``."""
    parts = []
    for name, value in params.as_dict().items():
        if name in ("apply", "seed", "audio"):  # audio: bank recordings read on the host, not a parameter
            continue
        v = value[i]
        parts.append(f"{name}={v.item():+.2f}" if v.dim() == 0 else f"{name}={v.tolist()}")
    return " ".join(parts)[:60]


@torch.no_grad()
def grid_columns(wave: Tensor, lengths: Tensor, ids: Tensor, pipeline: FeaturePipeline, epoch: int = 0) -> list:
    """The grid's columns: ``[(title, features (B, F, N), frame_lengths (B,), params or None)]``,
    the eval log-mel first, then each op of ``pipeline`` alone, forced on (``p=1``)."""
    base, frames = pipeline(wave, lengths, ids, epoch, train=False)
    columns = [("original", base, frames, None)]
    for op in pipeline.ops:
        single = pipeline.with_ops([dataclasses.replace(op, p=1.0)])
        params = single.sample_params(ids, lengths, epoch)
        feats, fl = single.apply_params(wave, lengths, params)
        columns.append((op.key, feats, fl, params[op.key]))
    return columns


@torch.no_grad()
def render_augmentation_grid(wave: Tensor, lengths: Tensor, ids: Tensor, pipeline: FeaturePipeline, path,
                             epoch: int = 0) -> Path:
    """Write a PNG grid of ``wave (B, T)`` (``lengths (B,)`` samples, ``ids (B,)``): rows = samples,
    columns = original log-mel then each op of ``pipeline`` applied alone. Returns the path."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state

    path = Path(path)
    columns = grid_columns(wave, lengths, ids, pipeline, epoch)
    base, frames = columns[0][1], columns[0][2]
    rows, cols = wave.shape[0], len(columns)
    fig = Figure(figsize=(2.8 * cols, 2.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        ref = base[r, :, : frames[r]]
        lo, hi = float(ref.min()), float(ref.max())
        for c, (title, feats, fl, params) in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(feats[r, :, : fl[r]].cpu().numpy(), origin="lower", aspect="auto", cmap="magma",
                      vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"id {int(ids[r])}", fontsize=8)
            if params is not None:
                ax.set_xlabel(describe_params(params, r), fontsize=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def synthetic_signals(sample_rate: int = 16000, seconds: float = 2.0) -> tuple[Tensor, Tensor]:
    """Four non-stationary test signals of decreasing length, zero-padded: a linear chirp, a
    harmonic glide (f0 120 → 280 Hz, 8 harmonics), harmonic "syllables" with vibrato, and
    noise bursts. 10 ms fades at both ends. Returns ``(4, T)``, ``lengths (4,)``."""
    n = int(sample_rate * seconds)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    chirp = torch.sin(2 * math.pi * (200 * t + (1800 / (2 * seconds)) * t * t))
    f0 = 120 * (280 / 120) ** (t / seconds)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    glide = sum(torch.sin(k * phase) / k for k in range(1, 9))
    vib = 2 * math.pi * (180 * t) + 3.0 * torch.sin(2 * math.pi * 5 * t)
    syllables = sum(torch.sin(k * vib) / k for k in range(1, 6)) * (torch.sin(2 * math.pi * 2.5 * t) > 0)
    g = torch.Generator().manual_seed(0)
    bursts = torch.randn(n, generator=g, dtype=torch.float64) * (torch.sin(2 * math.pi * 3 * t) > 0.3)
    lengths = torch.tensor([n, int(n * 0.85), int(n * 0.7), int(n * 0.55)])
    wave = torch.zeros(4, n)
    fade = int(0.01 * sample_rate)
    for i, (s, length) in enumerate(zip([chirp, glide, syllables, bursts], lengths.tolist())):
        s = s[:length] / s[:length].abs().max()
        ramp = torch.ones(length, dtype=torch.float64)
        ramp[:fade] = torch.linspace(0, 1, fade, dtype=torch.float64)
        ramp[-fade:] = torch.linspace(1, 0, fade, dtype=torch.float64)
        wave[i, :length] = (0.5 * s * ramp + 1e-3 * torch.randn(length, generator=g, dtype=torch.float64)).float()
    return wave, lengths


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Render an augmentation grid on synthetic signals.")
    ap.add_argument("--out", required=True, help="PNG path to write")
    ap.add_argument("--policy", default="ser", help="ser | specaugment_lb | none")
    ap.add_argument("--epoch", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of the longest signal")
    ap.add_argument("--noise", nargs="+", help="noise bank sources (folders, manifests, files)")
    ap.add_argument("--rir", nargs="+", help="RIR bank sources (folders, manifests, files)")
    args = ap.parse_args(argv)
    wave, lengths = synthetic_signals(seconds=args.seconds)
    banks = {}
    if args.noise or args.rir:
        from lightning_ser.paths import default_cache_dir
        from .bank import load_bank

        for kind, sources in (("noise", args.noise), ("rir", args.rir)):
            if sources:
                banks[kind] = load_bank(kind, sources, default_cache_dir() / "banks", sample_rate=16000)
    pipe = FeaturePipeline(policy=args.policy, seed=args.seed, banks=banks)
    out = render_augmentation_grid(wave, lengths, torch.arange(len(lengths)), pipe, args.out, epoch=args.epoch)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
