"""Real servers and helpers the tests and benchmarks start."""
