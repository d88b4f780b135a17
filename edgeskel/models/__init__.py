"""Model zoo. Each model is one self-contained file registered by name."""

from edgeskel.models.registry import available_models, build, model_entry, register_model

# Importing the model files registers them.
from edgeskel.models import ctrgcn, hyperformer, stgcn  # noqa: E402,F401  isort: skip
from edgeskel.models import aagcn, msg3d, pyskl_ctrgcn, stgcnpp  # noqa: E402,F401  isort: skip
from edgeskel.models import efficientgcn, shiftgcn  # noqa: E402,F401  isort: skip
from edgeskel.models import user  # noqa: E402,F401  isort: skip
from edgeskel.models import ensemble  # noqa: E402,F401  isort: skip

__all__ = ["available_models", "build", "model_entry", "register_model"]
