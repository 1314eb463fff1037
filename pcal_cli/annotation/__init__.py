"""A person in the loop: export a round's queries for labelling, import the labelled files.

    export_queries(project, round, out_dir, fmt="ply")   -> manifest (dict)
    import_labels(project, round, in_dir)                -> LabelCommit (round + 1, source "import")
    query_points(project, round, queries)                -> {scene: bool mask of the points to label}

The workflow for CloudCompare is in ``docs/labelling.md``; field layout and reserved values in
:mod:`pcal_cli.annotation.formats`.
"""

from pcal_cli.annotation.export import MANIFEST, export_queries, load_queries, query_points
from pcal_cli.annotation.formats import FLOAT32_EXACT, NOT_ASKED, QUERY
from pcal_cli.annotation.importer import import_labels

__all__ = ["FLOAT32_EXACT", "MANIFEST", "NOT_ASKED", "QUERY", "export_queries", "import_labels",
           "load_queries", "query_points"]
