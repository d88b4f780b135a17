"""CONTRACT DOUBLE of cuda-python's `cuda.bindings` (tests only)."""
