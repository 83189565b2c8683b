"""Studies across runs: comparing attention variants over seeds, and significance tests."""
