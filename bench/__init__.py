"""Benchmarks of cdr-connector: `python -m bench --help`."""
