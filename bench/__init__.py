"""Benchmarks of the item channels against two baselines: `python -m bench`."""
