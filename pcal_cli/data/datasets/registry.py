"""Dataset importers by name: ``DATASETS[name](raw, **options) -> RawDataset``."""

from __future__ import annotations

from collections.abc import Callable

from pcal_cli.data.datasets.base import RawDataset
from pcal_cli.data.datasets.folder import open_folder
from pcal_cli.data.datasets.s3dis import open_s3dis
from pcal_cli.data.datasets.scannet import open_scannet
from pcal_cli.data.datasets.semantickitti import open_semantickitti
from pcal_cli.data.datasets.sensaturban import open_sensaturban
from pcal_cli.data.datasets.synthetic import open_synthetic

DATASETS: dict[str, Callable[..., RawDataset]] = {
    "synthetic": open_synthetic,
    "s3dis": open_s3dis,
    "scannet": open_scannet,
    "semantickitti": open_semantickitti,
    "sensaturban": open_sensaturban,
    "folder": open_folder,
}
