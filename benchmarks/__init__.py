"""Benchmark scripts: `python -m benchmarks.NAME --out FILE.json`."""
