"""Performance tooling: timed loops, the step profile, FLOP counts and resident memory."""
