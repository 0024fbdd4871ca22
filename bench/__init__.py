"""Benchmarks of DynConfig's read path (`python bench/run.py`); see bench/README.md."""
