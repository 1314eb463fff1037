"""Entries from other installed packages, and hooks named as ``"module:attribute"``.

A package adds methods, scorers, selectors, backbones or dataset importers to pcal's registries
by declaring Python entry points in these groups (pyproject.toml of the plugin)::

    [project.entry-points."pcal.methods"]
    my_margin = "my_pcal_plugin:METHOD"          # a pcal_cli.methods.Method
    [project.entry-points."pcal.scorers"]
    my_score = "my_pcal_plugin:SCORER"           # a pcal_cli.acquisition.ScorerSpec
    [project.entry-points."pcal.selectors"]
    my_pick = "my_pcal_plugin:SELECTOR"          # a pcal_cli.selection.SelectorSpec with choose()
    [project.entry-points."pcal.backbones"]
    my_net = "my_pcal_plugin:MyNet"              # MyNet(in_channels, num_classes, cr) -> (logits, features)
    [project.entry-points."pcal.datasets"]
    my_data = "my_pcal_plugin:open_my_data"      # open_my_data(raw, **options) -> RawDataset

Each registry loads its group the first time it is looked up; an entry whose name is taken by a
built-in or an earlier plugin, or that fails to load, is skipped with a one-line warning.
:data:`ORIGINS` says where every plugin entry came from (``pcal methods`` lists them).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import replace
from collections.abc import Callable, MutableMapping
from importlib import metadata
from typing import Any

from pcal_cli.errors import PcalError, did_you_mean

GROUPS = {"methods": "pcal.methods", "scorers": "pcal.scorers", "selectors": "pcal.selectors",
          "backbones": "pcal.backbones", "datasets": "pcal.datasets"}
#: (kind, name) -> "distribution version" of every entry a plugin added.
ORIGINS: dict[tuple[str, str], str] = {}
_LOADED: set[str] = set()


def resolve(target: str) -> Any:
    """The object named ``"package.module:attribute"``."""
    module, _, attribute = target.partition(":")
    try:
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise PcalError(f"cannot load {target}: {exc}") from None
    return value


def load_plugins(kind: str, registry: MutableMapping[str, Any], check: Callable[[str, Any], Any]) -> None:
    """Add the entry points of ``kind``'s group to ``registry`` once; ``check(name, obj)``
    returns the entry to register or raises ``TypeError``/``ValueError`` with a reason."""
    if kind in _LOADED:
        return
    _LOADED.add(kind)
    for point in metadata.entry_points(group=GROUPS[kind]):
        origin = f"{point.dist.name} {point.dist.version}" if point.dist is not None else point.value
        if point.name in registry:
            warnings.warn(f"plugin {origin}: {kind[:-1]} '{point.name}' is already registered; the plugin's is "
                          "skipped", stacklevel=2)
            continue
        try:
            entry = check(point.name, point.load())
        except Exception as exc:  # a broken plugin must not break pcal
            warnings.warn(f"plugin {origin}: {kind[:-1]} '{point.name}' ({point.value}) skipped: {exc}", stacklevel=2)
            continue
        registry[point.name] = entry
        ORIGINS[(kind, point.name)] = origin


def named_spec(name: str, entry: object, spec_type: type) -> Any:
    """A plugin's ``entry`` checked to be a ``spec_type`` and registered under ``name`` (the
    entry point's name wins over the spec's own)."""
    if not isinstance(entry, spec_type):
        raise TypeError(f"expected a {spec_type.__module__}.{spec_type.__qualname__}, got {type(entry).__name__}")
    return entry if entry.name == name else replace(entry, name=name)


def lookup(kind: str, registry: MutableMapping[str, Any], check: Callable[[str, Any], Any], name: str) -> Any:
    """The entry of ``registry`` named ``name`` (case-insensitive), plugins loaded first; an
    unknown name is one :class:`PcalError` listing the choices, with the closest one."""
    load_plugins(kind, registry, check)
    key = str(name).strip().lower()
    if key not in registry:
        raise PcalError(f"unknown {kind[:-1]} {name!r}; choose one of: {', '.join(sorted(registry))}"
                        f"{did_you_mean(name, registry)}")
    return registry[key]


def origin(kind: str, name: str) -> str:
    """Where a registry entry comes from: ``pcal`` (built in) or the plugin's distribution."""
    return ORIGINS.get((kind, name), "pcal")


def reset() -> None:
    """Forget loaded plugin groups (tests install plugins at run time)."""
    _LOADED.clear()
