"""PyTorch eager: the reference every exported artifact is compared with (runs the checkpoint
itself; nothing is exported for it)."""

from edgeskel.backends.spec import BackendSpec

BACKEND = BackendSpec(
    name="torch",
    summary="PyTorch eager, the reference (the checkpoint itself)",
    precisions=("fp32",),
    runtime_modules=("torch",),
    dists=("torch",),
    install_hints={"torch": "install the PyTorch wheel for this device"},
    runner="torch",
    exported=False,
)
