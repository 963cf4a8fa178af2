"""``lightning-ser augment-grid --out grid.png``: the original log-mel of a few training crops beside
each augmentation op applied alone, for the configured data and policy."""
from __future__ import annotations

from typing import Sequence


def _options(parser) -> None:
    parser.add_argument("--out", default="augment_grid.png", help="the PNG to write")
    parser.add_argument("--n", type=int, default=4, help="how many training crops (rows)")
    parser.add_argument("--epoch", type=int, default=0, help="the epoch whose random draws are shown")


def main(argv: Sequence[str]) -> None:
    from lightning_ser.augment.grid import render_augmentation_grid
    from lightning_ser.commands.prepare import build_datamodule

    dm, cfg = build_datamodule(argv, "augment-grid", _options)
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.train_dataset()
    batch = ds.__getitems__([(i, cfg.epoch) for i in range(min(cfg.n, len(ds)))])
    wave = batch["audio"].float() / 32768.0
    render_augmentation_grid(wave, batch["lengths"], batch["ids"], dm.pipeline, cfg.out, epoch=cfg.epoch)
    print(f"wrote {cfg.out}")
