"""Benchmarks of this project; run ``python -m bench.api_bench``."""
