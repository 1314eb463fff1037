"""The project directory, the contract between subcommands.

    proj/
      pcal.yaml                  dataset, classes, colours, ignore value, voxel size, splits, regions
      scenes/<split>/<name>.ply  one PLY per scene
      rounds/rNNN/               one folder per active learning round
      ledger.jsonl               append-only record of every labelling event

This module owns the layout: paths, loading and validating ``pcal.yaml``, the writer lock and
listing scenes per split. Every write goes through :mod:`pcal_cli.atomic`.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pcal_cli.atomic import write_text
from pcal_cli.data.datasets.base import CHANNELS, SPLITS
from pcal_cli.data.ply import ply_vertex_count
from pcal_cli.errors import PcalError
from pcal_cli.training.profiles import check_training_section
from pcal_cli.yaml_io import load_yaml
from pcal_cli.layout import CONFIG_NAME, LEDGER_NAME, LOCK_NAME, ROUNDS_DIR, SCENES_DIR



@dataclass
class RegionSettings:
    """How the labelling regions stored in each PLY's ``region`` field were built."""

    kind: str = "supervoxel"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProjectConfig:
    """The contents of ``pcal.yaml``."""

    dataset: str
    classes: list[str]
    colors: list[list[int]]
    splits: dict[str, list[str]]
    ignore: int = -1
    indoor: bool = True
    channels: list[str] = field(default_factory=lambda: ["rgb"])
    voxel_size: float = 0.05
    grid: float | None = None
    regions: RegionSettings = field(default_factory=RegionSettings)
    source: dict[str, Any] = field(default_factory=dict)
    pcal_version: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # the training profile (pcal_cli.training.profiles)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = CONFIG_NAME) -> "ProjectConfig":
        """Validate a parsed ``pcal.yaml``; every problem is one clear :class:`PcalError`."""
        if not isinstance(data, dict):
            raise PcalError(f"{where}: expected a mapping at the top level")
        missing = [k for k in ("dataset", "classes", "colors", "splits") if k not in data]
        if missing:
            raise PcalError(f"{where}: missing field(s): {', '.join(missing)}")
        unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise PcalError(f"{where}: unknown field(s): {', '.join(unknown)}")
        classes = data["classes"]
        if not (isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)):
            raise PcalError(f"{where}: 'classes' must be a non-empty list of names")
        if len(set(classes)) != len(classes):
            raise PcalError(f"{where}: 'classes' has duplicate names")
        colors = data["colors"]
        if not (isinstance(colors, list) and len(colors) == len(classes) and all(_is_rgb(c) for c in colors)):
            raise PcalError(f"{where}: 'colors' must hold one [r, g, b] (0..255) per class")
        splits = data["splits"]
        if not isinstance(splits, dict) or not all(s in SPLITS for s in splits):
            raise PcalError(f"{where}: 'splits' must map {'/'.join(SPLITS)} to lists of scene names")
        for split, names in splits.items():
            if not (isinstance(names, list) and all(isinstance(n, str) and _safe_name(n) for n in names)):
                raise PcalError(f"{where}: split '{split}' must be a list of plain scene names")
        channels = data.get("channels", ["rgb"])
        if not (isinstance(channels, list) and all(c in CHANNELS for c in channels)):
            raise PcalError(f"{where}: 'channels' must be a list of {', '.join(CHANNELS)}")
        voxel = data.get("voxel_size", 0.05)
        if not (isinstance(voxel, (int, float)) and not isinstance(voxel, bool) and voxel > 0):
            raise PcalError(f"{where}: 'voxel_size' must be a positive number (metres)")
        ignore = data.get("ignore", -1)
        if not (isinstance(ignore, int) and not isinstance(ignore, bool) and ignore < 0):
            raise PcalError(f"{where}: 'ignore' must be a negative integer")
        regions = data.get("regions") or {}
        if not (isinstance(regions, dict) and isinstance(regions.get("kind", "supervoxel"), str)
                and isinstance(regions.get("params") or {}, dict)):
            raise PcalError(f"{where}: 'regions' must be a mapping with a 'kind' and a 'params' mapping")
        grid = data.get("grid")
        if grid is not None and not (isinstance(grid, (int, float)) and not isinstance(grid, bool) and grid > 0):
            raise PcalError(f"{where}: 'grid' must be a positive number (metres) or null")
        indoor = data.get("indoor", True)
        if not isinstance(indoor, bool):
            raise PcalError(f"{where}: 'indoor' must be true or false")
        if not isinstance(data.get("source") or {}, dict):
            raise PcalError(f"{where}: 'source' must be a mapping")
        listed = [n for names in splits.values() for n in names]
        if len(set(listed)) != len(listed):
            twice = sorted({n for n in listed if listed.count(n) > 1})
            raise PcalError(f"{where}: scene(s) listed more than once across the splits: {', '.join(twice[:5])}")
        return cls(
            dataset=str(data["dataset"]),
            classes=list(classes),
            colors=[list(map(int, c)) for c in colors],
            splits={s: list(v) for s, v in splits.items()},
            ignore=ignore,
            indoor=indoor,
            channels=list(channels),
            voxel_size=float(voxel),
            grid=None if grid is None else float(grid),
            regions=RegionSettings(kind=regions.get("kind", "supervoxel"), params=dict(regions.get("params") or {})),
            source=dict(data.get("source") or {}),
            pcal_version=str(data.get("pcal_version", "")),
            training=check_training_section(data.get("training"), where),
        )


def _is_rgb(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    )


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def dump_config(config: ProjectConfig) -> str:
    """``pcal.yaml`` text: stable key order and formatting, so equal configs give equal bytes."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None, width=100)


class Project:
    """A project directory on disk."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- layout ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER_NAME

    @property
    def rounds_dir(self) -> Path:
        return self.root / ROUNDS_DIR

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    def scene_path(self, split: str, name: str) -> Path:
        return self.root / SCENES_DIR / split / f"{name}.ply"

    def round_dir(self, index: int) -> Path:
        return self.rounds_dir / f"r{index:03d}"

    # -- reading ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike | None) -> "Project":
        """Open an existing project; a missing folder or ``pcal.yaml`` is a clear error."""
        if root is None:
            raise PcalError("no project given: pass -p/--project PATH or set PCAL_PROJECT")
        project = cls(root)
        if not project.root.is_dir():
            raise PcalError(f"{project.root}: no such project directory")
        if not project.config_path.is_file():
            raise PcalError(f"{project.root}: not a pcal project (no {CONFIG_NAME}; run 'pcal prepare' first)")
        return project

    @property
    def config(self) -> ProjectConfig:
        if not hasattr(self, "_config"):
            self._config = load_config(self.config_path)
        return self._config

    def scenes(self, split: str) -> list[str]:
        """Scene names of ``split`` as listed in ``pcal.yaml`` (an unknown split is an error)."""
        if split not in SPLITS:
            raise PcalError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
        return list(self.config.splits.get(split, []))

    def scene_files(self, split: str) -> list[Path]:
        """Paths of the scenes of ``split``; a listed scene whose file is missing is an error."""
        paths = [self.scene_path(split, name) for name in self.scenes(split)]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise PcalError(f"{missing[0]}: scene listed in {CONFIG_NAME} is missing ({len(missing)} missing)")
        return paths

    def point_count(self, split: str) -> int:
        """Points of a split, from the PLY headers (the scenes are not loaded)."""
        return sum(ply_vertex_count(path) for path in self.scene_files(split))

    def rounds(self) -> list[int]:
        """Indices of the round folders present, ascending."""
        if not self.rounds_dir.is_dir():
            return []
        found = []
        for entry in self.rounds_dir.iterdir():
            name = entry.name
            if entry.is_dir() and len(name) == 4 and name[0] == "r" and name[1:].isdigit():
                found.append(int(name[1:]))
        return sorted(found)

    # -- writing ----------------------------------------------------------------------------------
    def write_config(self, config: ProjectConfig) -> None:
        write_text(self.config_path, dump_config(config))
        self._config = config

    @contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the project's writer lock; a second writer is refused with the holder's PID."""
        with writer_lock(self.lock_path, command):
            yield


def load_config(path: Path) -> ProjectConfig:
    """Read and validate ``pcal.yaml`` (safe loading only; a key given twice is an error)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PcalError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = load_yaml(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PcalError(f"{path}: invalid YAML{where}") from None
    return ProjectConfig.from_dict(data, where=str(path))


@contextmanager
def writer_lock(lock_path: Path, command: str) -> Iterator[None]:
    """An exclusive lock file holding ``{pid, host, command, since}``.

    A live holder makes the caller fail with a clear message; a lock left by a dead process on
    this host is taken over with a warning.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock_path)
            if holder is not None and _holder_alive(holder):
                raise PcalError(
                    f"project is busy: PID {holder.get('pid')} on {holder.get('host')} is running "
                    f"'{holder.get('command')}' (lock file {lock_path})"
                ) from None
            warnings.warn(f"taking over a stale lock left by PID {holder and holder.get('pid')}", stacklevel=2)
            lock_path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle)
        break
    else:
        raise PcalError(f"could not take the project lock {lock_path}")
    try:
        yield
    finally:
        holder = _read_lock(lock_path)
        if holder is not None and holder.get("pid") == info["pid"]:
            lock_path.unlink(missing_ok=True)


def _read_lock(lock_path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(lock_path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _holder_alive(holder: dict[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell for another machine: assume it is alive
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
