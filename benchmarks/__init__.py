"""Benchmarks of agegender: each module runs as `python -m benchmarks.<name>` from the repo root.

Shared readers and helpers live in `benchmarks.common`. The `*_worker.py` scripts are not part of
the package's imports: they run by file path inside the peer's own virtual environment.
"""
