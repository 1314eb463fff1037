"""Reading YAML a user wrote: PyYAML's safe loader, refusing duplicate mapping keys.

``yaml.safe_load`` keeps the last of two equal keys without a word, so a class map that gives
raw id 2 twice silently loses one mapping. :func:`load_yaml` makes that one clear line naming
the file, the key and both lines. Only safe loading is ever used: no Python tags, no objects.
"""

from __future__ import annotations

from typing import Any

import yaml

from pcal_cli.errors import PcalError

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives the same key twice (``line`` and ``first`` are 1-based)."""

    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"line {line}: duplicate key {_shown(key)} (already given on line {first})")
        self.key, self.line, self.first = key, line, first


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose mappings refuse a key given twice (merge keys ``<<`` aside)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: the safe constructor refuses it with its own message
                continue
        return super().construct_mapping(node, deep=deep)


class TextLoader(UniqueKeyLoader):
    """:class:`UniqueKeyLoader` whose plain scalars stay text (``00_000001`` is not the integer 1,
    ``no`` not False); only an empty value, ``null`` or ``~`` is None. For files of names."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in UniqueKeyLoader.yaml_implicit_resolvers.items()
    }


def _shown(key: Any) -> str:
    return repr(key) if isinstance(key, str) else str(key)


def load_yaml(text: str, source: str, names: bool = False) -> Any:
    """The YAML document in ``text``, safely loaded; a duplicate key is a :class:`PcalError`
    ``<source> line 4: duplicate key 2 (already given on line 3)``. With ``names`` plain scalars
    stay text (:class:`TextLoader`). Other YAML errors propagate as ``yaml.YAMLError`` so each
    caller keeps its own message for them."""
    try:
        return yaml.load(text, Loader=TextLoader if names else UniqueKeyLoader)  # SafeLoader subclasses only
    except DuplicateKeyError as exc:
        raise PcalError(f"{source} {exc}") from None
