"""CONTRACT DOUBLE of cuda-python (package `cuda`) for the tests: NOT CUDA. See bindings/runtime.py."""
