"""Dataset importers by name: ``get_dataset(name)(raw, **options) -> RawDataset`` (built in, or
from an installed plugin: entry point group ``pcal.datasets``)."""

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


def _check_dataset(name: str, entry: object) -> Callable[..., RawDataset]:
    if not callable(entry):
        raise TypeError(f"expected an importer open(raw, **options) -> RawDataset, got {type(entry).__name__}")
    return entry


def all_datasets() -> dict[str, Callable[..., RawDataset]]:
    """The built-in importers and those of installed plugins."""
    from pcal_cli.plugins import load_plugins

    load_plugins("datasets", DATASETS, _check_dataset)
    return DATASETS


def get_dataset(name: str) -> Callable[..., RawDataset]:
    """The importer registered as ``name`` (case-insensitive); :class:`PcalError` if unknown."""
    from pcal_cli.plugins import lookup

    return lookup("datasets", DATASETS, _check_dataset, name)
