"""Model zoo. Each model is one self-contained file registered by name."""

from edgeskel.models.registry import available_models, build, model_entry, register_model

__all__ = ["available_models", "build", "model_entry", "register_model"]
