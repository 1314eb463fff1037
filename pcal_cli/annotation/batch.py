"""A batch: one round's queries and the imports that answer them, one new round each.

A person may label a batch in parts. Each ``pcal label import --partial`` of the export folder
commits the points labelled so far as the next round (ledger source ``import``); the points left
unlabelled stay queried, and a later import of the same folder, completed, adds them as a further
round. The rounds made from round N's queries follow each other (N + 1, N + 2, ...) and hold no
``queries.json`` of their own: once one of them gets queries (``pcal select`` after a partial
import), or a round is made another way, the batch takes no more imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pcal_cli.project import Project
from pcal_cli.rounds import LABELLING_FILE, QUERIES_FILE, read_json


@dataclass(frozen=True)
class Batch:
    """Round ``origin``'s queries and the rounds its imports made (``imports``, oldest first, with
    their ``labelling.json`` records)."""

    origin: int
    imports: tuple[int, ...] = ()
    records: tuple[dict[str, Any], ...] = ()

    @property
    def labels_round(self) -> int:
        """The round whose labels the next import of the batch builds on."""
        return self.imports[-1] if self.imports else self.origin

    @property
    def open_points(self) -> int | None:
        """Points of the batch still to label after its last import (``None`` before the first;
        0 after an import made before partial imports existed: those were complete)."""
        if not self.records:
            return None
        return int(batch_record(self.records[-1]).get("open_points", 0))


def batch_record(record: dict[str, Any]) -> dict[str, Any]:
    """The ``batch`` part of an import's ``labelling.json`` (empty for older imports)."""
    batch = record.get("batch")
    return batch if isinstance(batch, dict) else {}


def _record(project: Project, round_index: int) -> dict[str, Any] | None:
    path = project.round_dir(round_index) / LABELLING_FILE
    return read_json(path, "labelling record") if path.is_file() else None


def batch_origin(project: Project, round_index: int) -> int:
    """The round whose queries ``round_index`` stands for: itself, or, for a round made by an
    import that has no ``queries.json`` of its own, the round whose queries that import answered."""
    if (project.round_dir(round_index) / QUERIES_FILE).is_file():
        return round_index
    record = _record(project, round_index) or {}
    origin = record.get("queries_round")
    if record.get("source") == "import" and isinstance(origin, int) and not isinstance(origin, bool):
        return origin
    return round_index


def _answers(project: Project, index: int, origin: int, record: dict[str, Any] | None) -> bool:
    """Whether round ``index`` was made by an import of round ``origin``'s queries that continues
    the batch (no queries were selected in the round before it, unless that is ``origin``)."""
    if record is None or record.get("source") != "import" or record.get("unit") == "tags":
        return False
    first = index == origin + 1
    if record.get("queries_round", origin if first else None) != origin:
        return False
    return first or not (project.round_dir(index - 1) / QUERIES_FILE).is_file()


def find_batch(project: Project, round_index: int) -> Batch:
    """The batch that round ``round_index`` (its queries, or one of its imports) belongs to."""
    origin = batch_origin(project, round_index)
    imports, records = [], []
    index = origin + 1
    while project.round_dir(index).is_dir():
        record = _record(project, index)
        if not _answers(project, index, origin, record):
            break
        imports.append(index)
        records.append(record)
        index += 1
    return Batch(origin, tuple(imports), tuple(records))


def made_by(project: Project, round_index: int) -> str:
    """How a round was made, in a few words: ``labelled by the oracle``, ``imported from DIR``..."""
    record = _record(project, round_index) or {}
    source = record.get("source")
    if source == "oracle":
        return "labelled by the oracle"
    if source == "import":
        folder = (record.get("import") or {}).get("folder")
        return f"imported from {folder}" if folder else "imported"
    return f"made by '{source}'" if source else "made by an unfinished command"


def closed_by(project: Project, batch: Batch) -> str | None:
    """Why the batch takes no more imports, or ``None`` while it does: a round after its last
    import that is not one of its imports, or queries selected in its last import's round."""
    last = batch.labels_round
    if batch.imports and (project.round_dir(last) / QUERIES_FILE).is_file():
        return f"round {last}, its last import, has queries of its own since"
    later = [r for r in project.rounds() if r > last]
    if later:
        return f"round {last + 1} was {made_by(project, last + 1)}"
    return None
