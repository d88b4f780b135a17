"""The factorized layers live in `edgeskel.models.lowrank` (model layers that checkpoint loading
needs without the compression stage); this name stays for code that imported them from here."""

from edgeskel.models.lowrank import (  # noqa: F401 - re-exported names
    KINDS,
    METHODS,
    LowRankConv1x1,
    LowRankConvK,
    LowRankLinear,
    Tucker2Conv,
    build_factorized,
    layer_kind,
    layer_shape,
    unsupported_reason,
)
