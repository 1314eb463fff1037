"""Test helpers that are not part of the ``pcal`` wheel.

``pyproject.toml`` ships only the ``pcal_cli*`` packages, so nothing here is installed. The
test suite finds this folder through pytest's ``pythonpath = ["."]`` (the repository root);
scripts under ``benchmarks/`` put the repository root on ``sys.path`` themselves.

- :mod:`testing.faults`: fault injection (SIGKILL a ``pcal`` command, rerun it, check the
  project), used by ``tests/test_fault_injection.py``, a few other tests and
  ``benchmarks/fault_injection.py``.
"""
