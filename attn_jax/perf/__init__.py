"""Performance tooling: the benchmark, the step profile, FLOP counts and host memory."""
