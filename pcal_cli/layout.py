"""Every file and folder name of a pcal project, in one place (the project contract).

    PROJ/pcal.yaml                      CONFIG_NAME     settings (classes, channels, splits, training)
    PROJ/ledger.jsonl                   LEDGER_NAME     every labelling event, appended
    PROJ/.pcal.lock                     LOCK_NAME       the writer lock
    PROJ/scenes/<split>/<name>.ply      SCENES_DIR      the prepared scenes
    PROJ/cache/                         CACHE_DIR       per-scene properties (regions, features)
    PROJ/round_plan.json                PLAN_FILE       a `pcal round` run, to resume it
    PROJ/rounds/rNNN/                   ROUNDS_DIR      one folder per round:
        labels/<scene>.npz              LABELS_DIR      the labels revealed up to this round
        labelling.json                  LABELLING_FILE  what this round's labelling added
        seed.json                       SEED_FILE       how round 0 was drawn
        model.pt, model.partial.pt      MODEL_FILE, PARTIAL_FILE
        metrics.json, metrics.shards/   METRICS_FILE, SHARDS_DIR
        scores/<scene>.npz              SCORES_DIR      acquisition scores of the round's units
        queries.json, round.json        QUERIES_FILE, ROUND_FILE
        manifest.json                   MANIFEST_FILE   checksums of a closed round
        tags.json                       TAGS_FILE       scene-level class tags (WSegPC)
        flow.pt, prototypes.npz         FLOW_FILE, PROTOTYPES_FILE (JoPro)
        wsegpc/                         WSEGPC_DIR      WSegPC's stages
        report/                         REPORT_DIR      `pcal view`'s pages
    PROJ/full/                          FULL_DIR        the full-supervision reference
    PROJ/compare/<method>/sN/           COMPARE_DIR     `pcal compare` runs (each a project):
        compare.json, run.json          SETTINGS_FILE, RUN_FILE
        convergence.json                CONVERGENCE_FILE
    PROJ/references/                    REFERENCES_DIR  references shared by comparisons

Modules import these names from here; none spells a project path of its own.
"""

CONFIG_NAME = "pcal.yaml"
LEDGER_NAME = "ledger.jsonl"
LOCK_NAME = ".pcal.lock"
SCENES_DIR = "scenes"
ROUNDS_DIR = "rounds"
CACHE_DIR = "cache"
PLAN_FILE = "round_plan.json"

LABELS_DIR = "labels"
LABELLING_FILE = "labelling.json"
SEED_FILE = "seed.json"
MODEL_FILE = "model.pt"
PARTIAL_FILE = "model.partial.pt"
METRICS_FILE = "metrics.json"
SHARDS_DIR = "metrics.shards"
SCORES_DIR = "scores"
QUERIES_FILE = "queries.json"
ROUND_FILE = "round.json"
MANIFEST_FILE = "manifest.json"
TAGS_FILE = "tags.json"
FLOW_FILE = "flow.pt"
PROTOTYPES_FILE = "prototypes.npz"
WSEGPC_DIR = "wsegpc"
REPORT_DIR = "report"

FULL_DIR = "full"
COMPARE_DIR = "compare"
REFERENCES_DIR = "references"
SETTINGS_FILE = "compare.json"
RUN_FILE = "run.json"
CONVERGENCE_FILE = "convergence.json"
