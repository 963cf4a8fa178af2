"""``python -m lightning_ser augment-grid --out grid.png``: the original log-mel of a few training
crops beside each augmentation op applied alone, for the configured data and policy."""
from __future__ import annotations

from typing import Sequence


def main(argv: Sequence[str]) -> None:
    from lightning_ser.augment.inspect import render_augmentation_grid
    from lightning_ser.commands.prepare import build_datamodule

    out, n, epoch, rest = "augment_grid.png", 4, 0, []
    it = iter(argv)
    for a in it:
        if a == "--out":
            out = next(it)
        elif a == "--n":
            n = int(next(it))
        elif a == "--epoch":
            epoch = int(next(it))
        else:
            rest.append(a)
    dm, _ = build_datamodule(rest, __doc__.splitlines()[0])
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.train_dataset()
    batch = ds.__getitems__([(i, epoch) for i in range(min(n, len(ds)))])
    wave = batch["audio"].float() / 32768.0
    render_augmentation_grid(wave, batch["lengths"], batch["ids"], dm.pipeline, out, epoch=epoch)
    print(f"wrote {out}")
