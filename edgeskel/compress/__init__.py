"""Low-rank compression (LORTSAR-style): factorize Linear / 1x1 / k x 1 convs into standard layers.

`compress_model(model, cfg, input_shape, calib)` returns (compressed copy, report);
`apply_plan(model, plan)` rebuilds the factorized structure so a compressed checkpoint
reloads without the recipe (used by `edgeskel.checkpoint.build_from_spec`).
"""

from edgeskel.compress.api import compress_model
from edgeskel.compress.config import CompressionConfig
from edgeskel.models.lowrank import PLAN_FORMAT, apply_plan

__all__ = ["CompressionConfig", "PLAN_FORMAT", "apply_plan", "compress_model"]
