"""Side-by-side benchmarks of invblocks (run as ``python -m benchmarks.<name>``; not tests)."""
