"""Fault injection: SIGKILL a ``pcal`` command part-way, run it again, check nothing was lost.

pcal promises (docs/project.md, docs/loop.md) that every file is written to a hidden temporary
name and renamed, that a round folder is complete or absent, that the ledger is brought in line
with the round folders, that labels only grow, and that a step which was interrupted is simply
run again and ends with the same files as an uninterrupted run. This module tests those promises
from the outside, the way a power cut or an out-of-memory killer would break them:

1. a *reference* run of a step on a copy of a small project, timed (the whole command, and the
   *work window* while it holds the project's writer lock);
2. *trials*: the same step on fresh copies, killed with SIGKILL after a seeded random delay
   (:func:`kill_and_resume`) or at the entry of a chosen function (*crash points*,
   :func:`crash_and_resume`); then the project is checked (:func:`check_invariants`), the step
   is run again to completion, checked again, and its files (:func:`snapshot`) are compared with
   the reference.

Library use::

    harness = FaultHarness(workdir)
    report = harness.run_trials("train", trials=3, seed=0)
    assert not report.failures, report.describe()

``benchmarks/fault_injection.py`` runs every step from the command line; a small sample runs in
the test suite (``tests/test_fault_injection.py``).

This is a test helper, not part of the ``pcal`` wheel (``testing/`` is not in pyproject's package
list): import it as ``testing.faults`` with the repository root on ``sys.path`` (pytest's
``pythonpath``; the benchmark inserts it). The commands it runs are ``python -m pcal_cli`` with
this interpreter, so ``pcal_cli`` must be importable there (an installed or editable ``pcal``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcal_cli.atomic import TMP_SUFFIX

LOCK_NAME = ".pcal.lock"
PARTIAL_MODEL = "model.partial.pt"
CONFIG_NAME = "pcal.yaml"
LEDGER_NAME = "ledger.jsonl"
UNKNOWN = -1
VOID = -2
#: Folders a snapshot leaves out: caches that are always safe to delete and may be rebuilt.
VOLATILE_DIRS = ("cache",)
#: Text files whose absolute paths are replaced by ``<project>`` in a snapshot (runs live in
#: different folders; the export manifest and the import record name them).
TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml")
POLL = 0.002  # seconds between polls of a running command


# -- running commands ----------------------------------------------------------------------------
def pcal_command(*args: str | os.PathLike) -> list[str]:
    """``python -m pcal_cli ARGS`` with this interpreter (the same code and environment)."""
    return [sys.executable, "-m", "pcal_cli", *(str(a) for a in args)]


def fault_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the commands: ``base`` (default ``os.environ``) with one OpenMP thread
    unless set, no ``PCAL_PROJECT`` (every command names its project) and no colour codes."""
    env = dict(os.environ if base is None else base)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("PCAL_PROJECT", None)
    env.setdefault("NO_COLOR", "1")
    return env


def busy(project: Path) -> bool:
    """Whether a command is working on ``project``: it holds the writer lock, or ``prepare`` is
    building its staging folder beside it."""
    project = Path(project)
    if (project / LOCK_NAME).exists():
        return True
    parent = project.parent
    return parent.is_dir() and any(parent.glob(f".{project.name}.prepare-*{TMP_SUFFIX}"))


@dataclass
class Timing:
    """A command run to completion: exit code, stderr, seconds to exit, and the work window
    (seconds from the start until the project was first and last seen busy; ``None`` if never)."""

    rc: int
    stderr: str
    duration: float
    busy_from: float | None
    busy_until: float | None

    def window(self, kind: str = "work") -> tuple[float, float]:
        """Where to draw kill delays: ``full`` = the whole run, ``work`` = while it holds the lock."""
        if kind == "full" or self.busy_from is None:
            return 0.0, self.duration
        if kind != "work":
            raise ValueError(f"unknown kill window {kind!r} (work or full)")
        return self.busy_from, max(self.busy_until or self.duration, self.busy_from)


def _spawn(command: Sequence[str], env: dict[str, str] | None, stderr) -> subprocess.Popen:
    # a session of its own: the SIGKILL goes to the command's whole process group, and only to it
    return subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=stderr, env=fault_env(env),
                            start_new_session=True)


def _kill(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group, only while the child is not reaped (its group id
    cannot have been reused), then reap it."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # the group ended on its own
            os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def run_timed(command: Sequence[str], project: Path, env: dict[str, str] | None = None,
              timeout: float = 600.0) -> Timing:
    """Run ``command`` to completion, polling when ``project`` is busy (see :func:`busy`)."""
    with tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        child = _spawn(command, env, err)
        first = last = None
        try:
            while child.poll() is None:
                now = time.perf_counter() - began
                if now > timeout:
                    raise TimeoutError(f"{' '.join(command)}: still running after {timeout:.0f} s")
                if busy(project):
                    first = now if first is None else first
                    last = now
                time.sleep(POLL)
        finally:
            if child.poll() is None:
                _kill(child)
        duration = time.perf_counter() - began
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return Timing(child.returncode, text, duration, first, last)


def run_inprocess(args: Sequence[str | os.PathLike], env: dict[str, str] | None = None,
                  project: Path | None = None) -> Timing:
    """Run ``pcal ARGS`` in this process (``pcal_cli.cli.main``), output captured, with the torch
    threads a subprocess would get from ``env``. Skipping the interpreter's start-up (seconds:
    torch, scikit-learn) keeps references and reruns fast. With ``project``, a thread polls
    :func:`busy` for the work window, as :func:`run_timed` does."""
    import contextlib
    import io
    import threading
    import traceback
    import warnings

    import torch

    from pcal_cli.cli import main

    threads = int(fault_env(env).get("OMP_NUM_THREADS") or 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    out, err = io.StringIO(), io.StringIO()
    seen: list[float] = []
    stop = threading.Event()
    began = time.perf_counter()

    def poll() -> None:
        while not stop.is_set():
            if busy(project):
                seen.append(time.perf_counter() - began)
            stop.wait(POLL)

    watcher = threading.Thread(target=poll, daemon=True) if project is not None else None
    if watcher is not None:
        watcher.start()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # a traceback is a failure of the step like any other
                code = 1
                err.write(traceback.format_exc())
    finally:
        torch.set_num_threads(previous)
        stop.set()
        if watcher is not None:
            watcher.join()
    duration = time.perf_counter() - began
    if project is None:
        return Timing(code, err.getvalue(), duration, 0.0, duration)
    return Timing(code, err.getvalue(), duration, seen[0] if seen else None, seen[-1] if seen else None)


def in_process(args: Sequence[str | os.PathLike], env: dict[str, str] | None = None) -> Callable[[], Timing]:
    """A rerun for :func:`kill_and_resume` that runs ``pcal ARGS`` in this process."""
    return lambda: run_inprocess(args, env)


Rerun = Sequence[str] | Callable[[], Timing]


# -- what a project must look like ---------------------------------------------------------------
def _walk(root: Path) -> Iterable[tuple[Path, list[str], list[str]]]:
    """``os.walk`` that never follows links (compare runs link to their parent's scenes)."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        files.sort()
        yield Path(folder), dirs, files


def _projects(root: Path) -> list[Path]:
    """``root`` and every project nested in it (``pcal compare`` runs), links not followed."""
    return [folder for folder, _, files in _walk(root) if CONFIG_NAME in files]


def temporaries(root: Path) -> tuple[list[Path], list[Path]]:
    """``(hidden, visible)`` temporary entries under ``root``: names ending in ``.tmp``. Hidden
    ones (``.<name>.<pid>.tmp``, staging folders) are what a kill may leave; a visible one is a
    broken promise."""
    hidden, visible = [], []
    for folder, dirs, files in _walk(root):
        for name in dirs + files:
            if name.endswith(TMP_SUFFIX):
                (hidden if name.startswith(".") else visible).append(folder / name)
        dirs[:] = [d for d in dirs if not d.endswith(TMP_SUFFIX)]  # inside staging: its own business
    return hidden, visible


def debris(root: Path) -> list[str]:
    """What an interruption left that a rerun did not clean up and that breaks no promise:
    hidden temporaries, a stale partial checkpoint beside a finished model, a stale staging folder
    of ``prepare``. ``pcal check --repair`` is the tool to remove them."""
    root = Path(root)
    found = [str(p.relative_to(root.parent)) for p in temporaries(root)[0]]
    found += [str(p.relative_to(root.parent)) for p in root.parent.glob(f".{root.name}.*{TMP_SUFFIX}")]
    for folder, _, files in _walk(root) if root.is_dir() else ():
        if PARTIAL_MODEL in files and "model.pt" in files:
            found.append(str((folder / PARTIAL_MODEL).relative_to(root.parent)) + " (beside model.pt)")
    return sorted(set(found))


def _readable(path: Path) -> str | None:
    """``None`` when a file with a final name is complete, else why not."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".jsonl":
            for line in path.read_text().splitlines():
                if line.strip():
                    json.loads(line)
        elif suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    data[key]
        elif suffix == ".pt":
            from pcal_cli.training.checkpoint import load_checkpoint

            load_checkpoint(path)
        elif suffix == ".ply":
            from pcal_cli.data.ply import read_ply

            read_ply(path)
        elif suffix in (".yaml", ".yml"):
            import yaml

            yaml.safe_load(path.read_text())
    except Exception as exc:  # any failure to read a final name is the finding
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}"
    return None


def check_invariants(project: str | os.PathLike, settled: bool = True) -> list[str]:
    """Problems found in ``project`` (and the projects nested in it); an empty list when sound.

    Always (also right after a kill):

    - no visible temporary file (names ending in ``.tmp`` start with ``.``);
    - every file with a final name is complete: JSON, JSON lines, ``.npy``, ``.npz``,
      checkpoints, PLYs and YAML all parse;
    - a project is complete or absent (``pcal.yaml`` valid, every listed scene present);
    - round folders are numbered 0..N without gaps, each with ``labels/`` and ``labelling.json``;
    - label files (sparse ``.npz``, or dense int16 ``.npy`` of earlier versions) are one per
      training scene with known points, of the scene's length, ids in -2..C-1;
    - labels only grow: a label known in round N is known, with the same class, in round N + 1
      (a class may change only in a round imported with ``--allow-relabel``);
    - ``labelling.json`` records the points each scene gained;
    - the ledger records, per round and scene, exactly the points the label files gained, and no
      round that has no folder. Right after a kill (``settled=False``) the ledger may lack the
      newest round (the kill fell between the round folder's rename and the ledger's update).

    With ``settled`` (after a command ran to completion) also: every round is in the ledger and
    no writer lock is left.
    """
    root = Path(project)
    if not root.exists():
        return []  # absent is fine: prepare builds elsewhere and renames
    problems = [f"{p.relative_to(root.parent)}: visible temporary file" for p in temporaries(root)[1]]
    for folder, dirs, files in _walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = folder / name
            if path.is_symlink():
                continue
            why = _readable(path)
            if why is not None:
                problems.append(f"{path.relative_to(root.parent)}: incomplete or unreadable ({why})")
    projects = _projects(root)
    if not projects:
        problems.append(f"{root}: exists but is not a pcal project (no {CONFIG_NAME})")
    for folder in projects:
        problems += [f"{folder.relative_to(root.parent)}: {p}" for p in _check_project(folder, settled)]
    return problems


def _check_project(root: Path, settled: bool) -> list[str]:
    from pcal_cli.data.ply import ply_vertex_count
    from pcal_cli.errors import PcalError
    from pcal_cli.label_files import LabelFileError, label_files, read_label_file
    from pcal_cli.project import Project

    project = Project(root)
    try:
        config = project.config
    except PcalError as exc:
        return [f"pcal.yaml: {exc}"]
    problems: list[str] = []
    sizes: dict[str, int] = {}
    for split, names in config.splits.items():
        for name in names:
            path = project.scene_path(split, name)
            try:
                count = ply_vertex_count(path)
            except PcalError as exc:
                problems.append(f"scene {split}/{name}: {exc}")
                continue
            if split == "train":
                sizes[name] = count
    if not (root / LEDGER_NAME).is_file():
        problems.append(f"no {LEDGER_NAME}")
    if settled and (root / LOCK_NAME).exists():
        problems.append(f"{LOCK_NAME} left behind by a command that has finished")

    rounds = project.rounds()
    if rounds != list(range(len(rounds))):
        problems.append(f"round folders are not numbered 0..N: {rounds}")
    counts: dict[int, dict[str, int]] = {}
    gained: dict[int, dict[str, int]] = {}
    previous: dict[str, np.ndarray] = {}
    for index in rounds:
        folder = project.round_dir(index)
        where = f"round {index}"
        if not (folder / "labels").is_dir():
            problems.append(f"{where}: no labels/ folder (incomplete round)")
        try:
            record = json.loads((folder / "labelling.json").read_text())
        except (OSError, ValueError):
            problems.append(f"{where}: no readable labelling.json (incomplete round)")
            record = None
        current: dict[str, np.ndarray] = {}
        for name, paths in label_files(folder / "labels").items():
            path = paths[0]
            if name not in sizes:
                problems.append(f"{where}: label file for {name}, which is not a training scene")
                continue
            if len(paths) > 1:
                problems.append(f"{where}: {name} has two label files ({', '.join(p.name for p in paths)})")
            try:
                labels = read_label_file(path)
            except LabelFileError as exc:
                problems.append(f"{where}: {path.name} unreadable ({exc})")
                continue
            if labels.dtype != np.int16 or labels.shape != (sizes[name],):
                problems.append(f"{where}: {path.name} is {labels.dtype} {labels.shape}, "
                                f"expected int16 ({sizes[name]},)")
                continue
            if labels.size and (labels.min() < VOID or labels.max() >= config.num_classes):
                problems.append(f"{where}: {path.name} holds ids outside {VOID}..{config.num_classes - 1}")
            if not (labels != UNKNOWN).any():
                problems.append(f"{where}: {path.name} holds no known label (such files are not written)")
            current[name] = labels
        for name, old in previous.items():
            new = current.get(name)
            if new is None:
                problems.append(f"{where}: the labels of {name} known in round {index - 1} disappeared")
                continue
            known = old != UNKNOWN
            lost = int((new[known] == UNKNOWN).sum())
            changed = int(((new[known] != old[known]) & (new[known] != UNKNOWN)).sum())
            if lost:
                problems.append(f"{where}: {lost} label(s) of {name} known in round {index - 1} are unknown again")
            relabel = bool(((record or {}).get("import") or {}).get("allow_relabel"))  # a person's corrections
            if changed and not relabel:
                problems.append(f"{where}: {changed} label(s) of {name} changed class since round {index - 1}")
        counts[index] = {n: int((a != UNKNOWN).sum()) for n, a in current.items()}
        before = counts.get(index - 1, {})
        gained[index] = {n: c - before.get(n, 0) for n, c in counts[index].items() if c - before.get(n, 0)}
        if record is not None:
            recorded = {n: int(v.get("points", 0)) for n, v in (record.get("scenes") or {}).items()}
            if recorded != gained[index]:
                problems.append(f"{where}: labelling.json records {recorded}, the label files gained {gained[index]}")
        previous = current

    try:
        lines = [json.loads(line) for line in (root / LEDGER_NAME).read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        lines = []  # reported above as an unreadable file
    ledger: dict[int, dict[str, int]] = {}
    for entry in lines:
        per_round = ledger.setdefault(int(entry.get("round", -1)), {})
        scene = str(entry.get("scene"))
        per_round[scene] = per_round.get(scene, 0) + int(entry.get("points", 0))
    stray = sorted(set(ledger) - set(rounds))
    if stray:
        problems.append(f"the ledger records round(s) {stray} that have no round folder")
    missing = [i for i in rounds if i not in ledger and gained.get(i)]
    allowed = [] if settled or not rounds else [rounds[-1]]
    if [i for i in missing if i not in allowed]:
        problems.append(f"the ledger does not record round(s) {[i for i in missing if i not in allowed]}")
    for index in rounds:
        if index in ledger and ledger[index] != gained[index]:
            problems.append(f"round {index}: the ledger records {ledger[index]} points per scene, "
                            f"the label files gained {gained[index]}")
    return problems


# -- what must match an uninterrupted run ----------------------------------------------------------
def snapshot(project: str | os.PathLike) -> dict[str, bytes]:
    """The files of ``project`` that an interrupted-then-resumed run must reproduce byte for byte:
    every regular file with a non-hidden name (scenes, ``pcal.yaml``, the ledger, label files,
    ``labelling.json``, models, metrics, scores, queries, ``round.json``, manifests, exports,
    compare runs), links and caches left out. In JSON and YAML files the project's absolute path
    is replaced by ``<project>`` (runs live in different folders)."""
    root = Path(project)
    if not root.exists():
        return {}
    names = sorted({str(root), str(root.resolve())}, key=len, reverse=True)
    files: dict[str, bytes] = {}
    for folder, dirs, entries in _walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (folder == root and d in VOLATILE_DIRS)]
        for name in entries:
            path = folder / name
            if name.startswith(".") or path.is_symlink():
                continue
            data = path.read_bytes()
            if path.suffix.lower() in TEXT_SUFFIXES:
                for text in names:
                    data = data.replace(text.encode(), b"<project>")
            files[path.relative_to(root).as_posix()] = data
    return files


def diff_snapshots(expected: dict[str, bytes], actual: dict[str, bytes], limit: int = 12) -> list[str]:
    """What differs between two snapshots: missing, extra and changed files (with a hint)."""
    found = [f"missing: {k}" for k in sorted(set(expected) - set(actual))]
    found += [f"extra: {k}" for k in sorted(set(actual) - set(expected))]
    for key in sorted(set(expected) & set(actual)):
        if expected[key] != actual[key]:
            found.append(f"differs: {key}" + _hint(expected[key], actual[key]))
    return found[:limit] + ([f"... {len(found) - limit} more"] if len(found) > limit else [])


def _hint(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f" ({len(a)} vs {len(b)} bytes)"
    first = next(i for i in range(len(a)) if a[i] != b[i])
    return f" (first difference at byte {first} of {len(a)})"


# -- one kill ------------------------------------------------------------------------------------
@dataclass
class KillResult:
    """One trial: what the kill hit and what the rerun gave.

    ``killed``: the command was still running when the SIGKILL came (else it had finished:
    the kill missed). ``wrote``: the project had changed (the lock aside) by then.
    ``after_kill`` / ``after_resume``: :func:`check_invariants` right after the kill / after the
    rerun. ``differences``: :func:`diff_snapshots` against the reference, when one was given.
    """

    command: list[str]
    kill_point: str
    killed: bool
    wrote: bool
    kill_at: float
    resume_rc: int
    resume_stderr: str
    after_kill: list[str] = field(default_factory=list)
    after_resume: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    debris: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.resume_rc != 0 or self.after_kill or self.after_resume or self.differences)

    def describe(self) -> str:
        args = self.command[3:] if self.command[1:3] == ["-m", "pcal_cli"] else self.command
        lines = [f"pcal {' '.join(args)}",
                 f"  kill point {self.kill_point}: killed={self.killed} wrote={self.wrote} "
                 f"(at {self.kill_at:.3f} s), rerun exit code {self.resume_rc}"]
        if self.resume_rc != 0:
            lines.append("  rerun stderr: " + " | ".join(self.resume_stderr.strip().splitlines()[-3:]))
        lines += [f"  after the kill: {p}" for p in self.after_kill]
        lines += [f"  after the rerun: {p}" for p in self.after_resume]
        lines += [f"  vs the uninterrupted run: {d}" for d in self.differences]
        return "\n".join(lines)


def _fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of everything under ``root`` but the writer lock."""
    found = {}
    if not root.exists():
        return found
    for folder, dirs, files in _walk(root):
        for name in dirs + files:
            if name == LOCK_NAME:
                continue
            path = folder / name
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_size if name in files else 0, stat.st_mtime_ns)
    return found


def _finish(command: Sequence[str], project: Path, env, resume: Rerun | None, reference, timeout: float,
            kill_point: str, killed: bool, wrote: bool, kill_at: float) -> KillResult:
    after_kill = check_invariants(project, settled=False)
    rerun = resume if resume is not None else command
    if callable(rerun):
        done = rerun()
        rc, stderr = done.rc, done.stderr
    else:
        ran = subprocess.run(list(rerun), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=fault_env(env),
                             timeout=timeout, text=True)
        rc, stderr = ran.returncode, ran.stderr
    result = KillResult(list(command), kill_point, killed, wrote, kill_at, rc, stderr, after_kill=after_kill)
    if rc == 0:
        result.after_resume = check_invariants(project, settled=True)
        if reference is not None:
            result.differences = diff_snapshots(reference, snapshot(project))
    result.debris = debris(project)
    return result


def kill_and_resume(command: Sequence[str], project: str | os.PathLike, kill_after: float,
                    env: dict[str, str] | None = None, *, after_busy: bool = False,
                    resume: Rerun | None = None, reference: dict[str, bytes] | None = None,
                    timeout: float = 600.0) -> KillResult:
    """Run ``command`` (e.g. :func:`pcal_command` ``("train", "-p", proj)``), SIGKILL it after
    ``kill_after`` seconds (unless it has finished), check the project, run ``resume`` (default:
    the same command; a command, or :func:`in_process` to rerun in this process) to completion,
    check again and compare with ``reference``.

    With ``after_busy`` the delay counts from the moment the command starts working on the
    project (:func:`busy`), not from its start: the interpreter's start-up time varies far more
    than the few milliseconds some steps hold the lock. ``project`` is the folder the command
    writes (its parent is watched too: ``prepare`` stages beside its target).
    """
    project = Path(project)
    watched = project.parent
    before = _fingerprint(watched)
    began = time.perf_counter()
    child = _spawn(command, env, subprocess.DEVNULL)
    start = None if after_busy else began
    killed = False
    try:
        while child.poll() is None:
            now = time.perf_counter()
            if now - began > timeout:
                break
            if start is None:
                if busy(project):
                    start = now
                else:
                    time.sleep(POLL / 2)
                    continue
            left = start + kill_after - now
            if left <= 0:
                killed = True
                break
            with contextlib.suppress(subprocess.TimeoutExpired):  # still running: poll again
                child.wait(timeout=min(left, 0.05))
    finally:
        at = time.perf_counter() - began
        killed = killed and child.poll() is None
        _kill(child)
    wrote = _fingerprint(watched) != before
    point = f"{kill_after:.3f} s after {'the lock' if after_busy else 'the start'}"
    return _finish(command, project, env, resume, reference, timeout, point, killed, wrote, at)


_CRASH_BOOT = r"""
import importlib, os, signal, sys
target, nth = sys.argv[1], int(sys.argv[2])
module_name, attr = target.split(":")
module = importlib.import_module(module_name)
original = getattr(module, attr)
calls = [0]
def crash(*args, **kwargs):
    calls[0] += 1
    if calls[0] >= nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(module, attr, crash)
from pcal_cli.cli import main
main(sys.argv[3:])
"""


def crash_command(args: Sequence[str | os.PathLike], point: str, nth: int = 1) -> list[str]:
    """``pcal ARGS`` that SIGKILLs itself on entering ``point`` (``"module:function"``, patched at
    that module: the name the caller looks up) for the ``nth`` time: a kill at an exact place."""
    return [sys.executable, "-c", _CRASH_BOOT, point, str(nth), *(str(a) for a in args)]


def crash_and_resume(args: Sequence[str | os.PathLike], project: str | os.PathLike, point: str, nth: int = 1,
                     env: dict[str, str] | None = None, *, resume: Rerun | None = None,
                     reference: dict[str, bytes] | None = None, timeout: float = 600.0) -> KillResult:
    """Like :func:`kill_and_resume`, the kill coming from inside at a crash point (see
    :func:`crash_command`); ``resume`` defaults to ``pcal ARGS``. ``killed`` is False when the
    command never reached the point."""
    project = Path(project)
    before = _fingerprint(project.parent)
    began = time.perf_counter()
    done = subprocess.run(crash_command(args, point, nth), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=fault_env(env), timeout=timeout, start_new_session=True)
    at = time.perf_counter() - began
    killed = done.returncode == -signal.SIGKILL
    wrote = _fingerprint(project.parent) != before
    return _finish(pcal_command(*args), project, env, resume if resume is not None else pcal_command(*args),
                   reference, timeout, f"{point}#{nth}", killed, wrote, at)


# -- the steps -------------------------------------------------------------------------------------
PROJECT = "{project}"
TRAIN_ARGS = ("--cr", "0.125", "--steps", "12", "--checkpoint-every", "3", "--device", "cpu")


def fill_with_truth(project: str | os.PathLike, folder: str | os.PathLike) -> int:
    """Label an export as a person would, with ``plyfile`` only: every query point of every
    exported PLY gets the scene's ground truth; return how many points were labelled."""
    from plyfile import PlyData, PlyElement

    project, folder = Path(project), Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    done = 0
    for name, entry in manifest["scenes"].items():
        truth = np.asarray(PlyData.read(str(project / "scenes" / "train" / f"{name}.ply"))["vertex"]["label"])
        path = folder / entry["file"]
        ply = PlyData.read(str(path), mmap=False)
        vertex = ply["vertex"].data
        query = vertex["scalar_query"] == 1
        vertex["scalar_Classification"][query] = truth[vertex["scalar_pid"][query].astype(np.int64)]
        PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<",
                comments=list(ply.comments)).write(str(path))
        done += int(query.sum())
    return done


@dataclass(frozen=True)
class Step:
    """A command under test: its arguments (``{project}`` stands for the project folder), the
    step whose finished reference it starts from (``None``: no project yet), extra arguments
    for the rerun, an optional hook that finishes the starting state, and crash points (see
    :func:`crash_command`) worth a targeted kill."""

    name: str
    args: tuple[str, ...]
    after: str | None
    resume_extra: tuple[str, ...] = ()
    before: Callable[[Path], None] | None = None
    crash_points: tuple[tuple[str, int], ...] = ()
    rerun_is_noop: bool = True  # False: a rerun after completion does more work by design

    def argv(self, project: Path, extra: Sequence[str] = ()) -> list[str]:
        return [a.replace(PROJECT, str(project)) for a in (*self.args, *extra)]


def _fill_export(project: Path) -> None:
    fill_with_truth(project, project / "labelling")


STEPS: dict[str, Step] = {step.name: step for step in (
    Step("prepare", ("prepare", "synthetic", "-p", PROJECT, "--scenes", "5", "--points", "1500",
                     "--seed-resolution", "0.8", "--min-region", "40"), None, resume_extra=("--force",),
         crash_points=(("pcal_cli.prepare:_move_into_place", 1), ("pcal_cli.prepare:write_ply", 3))),
    Step("seed", ("seed", "-p", PROJECT, "--unit", "region", "--budget", "5%"), "prepare",
         crash_points=(("pcal_cli.rounds:sync_ledger", 1), ("pcal_cli.rounds:write_json", 1))),
    Step("train", ("train", "-p", PROJECT, *TRAIN_ARGS), "seed", resume_extra=("--resume",),
         crash_points=(("pcal_cli.training.supervised:save_checkpoint", 2),
                       ("pcal_cli.training.supervised:save_checkpoint", 4))),
    Step("evaluate", ("evaluate", "-p", PROJECT, "--device", "cpu"), "train",
         crash_points=(("pcal_cli.evaluation.evaluate:write_json", 1),)),
    Step("score", ("score", "-p", PROJECT, "--scorer", "margin", "--unit", "region", "--features",
                   "--device", "cpu"), "train",
         crash_points=(("pcal_cli.steps.score:atomic_open", 2), ("pcal_cli.steps.score:score_scene", 1))),
    Step("select", ("select", "-p", PROJECT, "--budget", "3%"), "score",
         crash_points=(("pcal_cli.steps.select:write_json", 2),)),
    Step("label-oracle", ("label", "-p", PROJECT, "--oracle"), "select",
         crash_points=(("pcal_cli.rounds:sync_ledger", 1), ("pcal_cli.rounds:close_round", 1))),
    Step("label-export", ("label", "-p", PROJECT, "export", "--out", f"{PROJECT}/labelling"), "select",
         crash_points=(("pcal_cli.annotation.export:write_json", 1),
                       ("pcal_cli.annotation.export:sha256_file", 1))),
    Step("label-import", ("label", "-p", PROJECT, "import", f"{PROJECT}/labelling"), "label-export",
         before=_fill_export, crash_points=(("pcal_cli.rounds:sync_ledger", 1),)),
    # one round from round 1, then the final training of round 2 (pcal round's default); --rounds
    # counts from the latest round, so running it again after it finished runs another round
    Step("round", ("round", "-p", PROJECT, "--method", "margin", "--rounds", "1", "--budget", "3%", *TRAIN_ARGS),
         "label-oracle", rerun_is_noop=False,
         crash_points=(("pcal_cli.steps.round:oracle_round", 1), ("pcal_cli.rounds:sync_ledger", 1),
                       ("pcal_cli.steps.round:train_and_evaluate", 2))),
    Step("compare", ("compare", "-p", PROJECT, "--methods", "random,margin", "--seeds", "1", "--rounds", "1",
                     "--budget", "3%", "--seed-budget", "5%", "--cr", "0.125", "--steps", "4", "--finetune-steps", "4",
                     "--full-steps", "4", "--device", "cpu"),
         "prepare", crash_points=(("pcal_cli.steps.compare:_copy_seed", 2),
                                  ("pcal_cli.rounds:sync_ledger", 1), ("pcal_cli.steps.compare:write_json", 3))),
)}


@dataclass
class Reference:
    """A step's uninterrupted run: the starting state, the result, its snapshot and timing."""

    step: Step
    base: Path
    result: Path
    timing: Timing
    files: dict[str, bytes]


@dataclass
class StepReport:
    step: str
    reference: Reference
    trials: list[KillResult] = field(default_factory=list)

    @property
    def failures(self) -> list[KillResult]:
        return [t for t in self.trials if t.failed]

    @property
    def mid_run(self) -> int:
        return sum(t.killed for t in self.trials)

    @property
    def after_writes(self) -> int:
        return sum(t.killed and t.wrote for t in self.trials)

    def describe(self) -> str:
        timing = self.reference.timing
        head = (f"{self.step}: {len(self.trials)} trial(s), {self.mid_run} killed mid-run, "
                f"{self.after_writes} after the first write, {len(self.failures)} failed "
                f"(reference {timing.duration:.2f} s, work window {timing.window('work')[0]:.2f}-"
                f"{timing.window('work')[1]:.2f} s)")
        return "\n".join([head] + [t.describe() for t in self.failures])


class FaultHarness:
    """Runs references and trials under ``workdir`` (one folder per run; references are cached,
    and each step starts from a copy of the reference result of the step it follows).

    The killed run is always a subprocess. With ``inprocess`` the references and the reruns run
    in this process (:func:`run_inprocess`): the same code and files, without an interpreter
    start-up of several seconds each; a reference's work window is then the whole call, and its
    ``full`` window adds the start-up time of ``pcal --version``, measured once. ``keep`` keeps
    the folders of trials that passed (failed ones are always kept).
    """

    def __init__(self, workdir: str | os.PathLike, env: dict[str, str] | None = None, timeout: float = 600.0,
                 keep: bool = False, inprocess: bool = False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.timeout = timeout
        self.keep = keep
        self.inprocess = inprocess
        self._references: dict[str, Reference] = {}
        self._startup: float | None = None

    def startup(self) -> float:
        """Seconds a ``pcal`` subprocess needs before it can work (``pcal --version``)."""
        if self._startup is None:
            self._startup = run_timed(pcal_command("--version"), self.workdir / "none", self.env, self.timeout).duration
        return self._startup

    def _run(self, args: Sequence[str], project: Path) -> Timing:
        if not self.inprocess:
            return run_timed(pcal_command(*args), project, self.env, self.timeout)
        timing = run_inprocess(args, self.env, project)
        start = self.startup()
        shift = lambda t: None if t is None else start + t  # noqa: E731
        return Timing(timing.rc, timing.stderr, start + timing.duration, shift(timing.busy_from),
                      shift(timing.busy_until))

    def _copy_start(self, step: Step, target: Path) -> Path:
        """A fresh copy of the state ``step`` starts from; returns the project folder."""
        target.mkdir(parents=True)
        project = target / "p"
        if step.after is not None:
            shutil.copytree(self.reference(step.after).result, project, symlinks=True)
            if step.before is not None:
                step.before(project)
        return project

    def reference(self, name: str) -> Reference:
        """The uninterrupted run of step ``name`` (run once, on a copy of its starting state)."""
        if name in self._references:
            return self._references[name]
        step = STEPS[name]
        base = self._copy_start(step, self.workdir / name / "base")
        result = self.workdir / name / "reference" / "p"
        result.parent.mkdir(parents=True)
        if base.exists():
            shutil.copytree(base, result, symlinks=True)
        timing = self._run(step.argv(result), result)
        if timing.rc != 0:
            raise RuntimeError(f"the uninterrupted run of {name} failed ({timing.rc}): {timing.stderr.strip()[-800:]}")
        problems = check_invariants(result, settled=True)
        if problems:
            raise RuntimeError(f"the uninterrupted run of {name} breaks the invariants: {problems}")
        self._references[name] = Reference(step, base, result, timing, snapshot(result))
        return self._references[name]

    def trial(self, name: str, label: str, kill_after: float | None = None, after_busy: bool = False,
              crash: tuple[str, int] | None = None) -> KillResult:
        """One trial of step ``name``: a kill ``kill_after`` seconds after the start (or after the
        lock, with ``after_busy``; see :func:`kill_and_resume`), or at ``crash``."""
        step = STEPS[name]
        ref = self.reference(name)
        folder = self.workdir / name / label
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        project = folder / "p"
        if ref.base.exists():
            shutil.copytree(ref.base, project, symlinks=True)
        again = step.argv(project, step.resume_extra)
        resume = in_process(again, self.env) if self.inprocess else pcal_command(*again)
        if crash is not None:
            result = crash_and_resume(step.argv(project), project, crash[0], crash[1], self.env, resume=resume,
                                      reference=ref.files, timeout=self.timeout)
        else:
            result = kill_and_resume(pcal_command(*step.argv(project)), project, float(kill_after or 0.0),
                                     self.env, after_busy=after_busy, resume=resume, reference=ref.files,
                                     timeout=self.timeout)
        if not self.keep and not result.failed:
            shutil.rmtree(folder, ignore_errors=True)
        return result

    def rerun_finished(self, name: str) -> KillResult:
        """Run step ``name`` to completion on a fresh copy of its starting state, then run it
        again: what a kill that lands after the last write (while the command prints or exits)
        leaves to the rerun. (Not on a copy of the reference: some files name their project's
        folder, which a copy changes.)"""
        step = STEPS[name]
        ref = self.reference(name)
        folder = self.workdir / name / "after-the-end"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        project = folder / "p"
        if ref.base.exists():
            shutil.copytree(ref.base, project, symlinks=True)
        first = self._run(step.argv(project), project)
        if first.rc != 0:
            raise RuntimeError(f"the uninterrupted run of {name} failed ({first.rc}): {first.stderr.strip()[-800:]}")
        again = step.argv(project, step.resume_extra)
        resume = in_process(again, self.env) if self.inprocess else pcal_command(*again)
        result = _finish(pcal_command(*step.argv(project)), project, self.env, resume, ref.files, self.timeout,
                         "after the end", False, True, first.duration)
        if not self.keep and not result.failed:
            shutil.rmtree(folder, ignore_errors=True)
        return result

    def run_trials(self, name: str, trials: int, seed: int = 0, window: str = "work",
                   crash_points: bool = False, after_end: bool = False,
                   on_trial: Callable[[str, KillResult], None] | None = None) -> StepReport:
        """``trials`` kills of step ``name`` at seeded random delays drawn uniformly over the
        reference's ``window`` (``work``: the time it held the lock, counted from the moment the
        trial takes the lock; ``full``: the whole run, from the start); then, with
        ``crash_points``, one kill at each of the step's crash points; with ``after_end``, a rerun
        of the finished step (:meth:`rerun_finished`; not for steps whose rerun does more work by
        design)."""
        ref = self.reference(name)
        report = StepReport(name, ref)
        low, high = ref.timing.window(window)

        def add(result: KillResult) -> None:
            report.trials.append(result)
            if on_trial is not None:
                on_trial(name, result)

        for index in range(trials):
            rng = random.Random(f"{seed}/{name}/{index}")
            delay = rng.uniform(0.0, high - low)
            result = self.trial(name, f"trial-{seed}-{index}", kill_after=delay, after_busy=window == "work")
            result.kill_point += f" (seed {seed}, trial {index})"
            add(result)
        if crash_points:
            for point, nth in STEPS[name].crash_points:
                add(self.trial(name, f"crash-{point.replace(':', '.')}-{nth}", crash=(point, nth)))
        if after_end and STEPS[name].rerun_is_noop:
            add(self.rerun_finished(name))
        return report


def format_table(reports: Sequence[StepReport]) -> str:
    """step | trials | killed mid-run | after first write | failures | reference seconds."""
    rows = [("step", "trials", "killed mid-run", "after first write", "failures", "reference s")]
    for r in reports:
        rows.append((r.step, str(len(r.trials)), str(r.mid_run), str(r.after_writes), str(len(r.failures)),
                     f"{r.reference.timing.duration:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
