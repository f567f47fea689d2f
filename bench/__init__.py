"""Benchmarks (scripts that print numbers; not tests)."""
