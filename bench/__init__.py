"""Benchmarks: `python -m bench.<name>`; each compares against the baseline a user would otherwise use, in the same run."""
