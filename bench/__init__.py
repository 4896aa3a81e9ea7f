"""Benchmarks and fault injection (make bench, make chaos)."""
