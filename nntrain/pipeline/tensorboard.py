"""Optional TensorBoard logging (``output.tensorboard: true``): the epoch scalars that go to
``metrics.csv`` plus the first-layer filter grid, under ``<run>/tensorboard/``.

TensorBoard is an optional dependency (``pip install 'nntrain[tensorboard]'``); asking for
it without the package installed is a config error, reported before the run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch import nn

from nntrain.errors import ConfigError

SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "lr": "lr",
    "seconds": "time/epoch_seconds",
}


def require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError:
        raise ConfigError(
            "output.tensorboard: true, but the 'tensorboard' package is not installed; "
            "pip install 'nntrain[tensorboard]' (or pip install tensorboard), or set output.tensorboard: false"
        ) from None


class TensorBoardLogger:
    """Training callback writing one TensorBoard step per epoch."""

    def __init__(self, log_dir: str | Path, model: nn.Module, input_shape: Sequence[int]):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.model = model  # fit trains this very module in place
        self.input_shape = tuple(input_shape)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for key, tag in SCALARS.items():
            self.writer.add_scalar(tag, float(record[key]), step)
        for key, value in record.items():
            if key.startswith("update_ratio."):
                self.writer.add_scalar(f"update_ratio/{key.removeprefix('update_ratio.')}", float(value), step)
        self.writer.add_image("filters/first_layer", self.filter_image(), step, dataformats="HWC")

    def on_fit_end(self, history: Any) -> None:
        self.writer.add_scalar("accuracy/test", float(history.test_acc), len(history.records))
        self.close()

    def filter_image(self):
        from nntrain.models import first_layer_weights
        from nntrain.plots import filter_tiles, mosaic_rgb, tile_mosaic, tile_scale

        tiles = filter_tiles(first_layer_weights(self.model), self.input_shape)
        return mosaic_rgb(tile_mosaic(tiles), tile_scale(tiles))  # (H, W, 3) uint8

    def close(self) -> None:
        self.writer.close()
