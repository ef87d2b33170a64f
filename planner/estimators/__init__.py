"""Pure estimator functions: specs in, typed results out. No I/O, no torch."""
