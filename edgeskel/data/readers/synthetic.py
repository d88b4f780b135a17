"""Synthetic dataset reader (`synthetic?layout=kinect20&classes=10&per_class=40&test_per_class=16&seed=0&frames=48`)."""

from __future__ import annotations

from edgeskel.data.registry import ReaderResult, ReadRequest, register_reader
from edgeskel.data.synthetic import ACTIONS, generate_split
from edgeskel.errors import ConfigError, DataError
from edgeskel.layouts import get_layout


@register_reader("synthetic")
def read_synthetic(req: ReadRequest) -> ReaderResult:
    o = req.options
    name = o.get_str("layout")
    if name is not None:
        try:
            lay = get_layout(name)
        except ConfigError as exc:
            raise DataError(req.spec, f"bad layout option: {exc}") from None
        if req.layout is not None and req.layout != lay:
            raise DataError(req.spec, f"layout={name} in the spec contradicts the requested layout {req.layout.name!r}")
    else:
        lay = req.layout or get_layout("kinect20")
    classes = o.get_int("classes", 10, lo=1, hi=len(ACTIONS))
    per_class = o.get_int("per_class", 40, lo=1, hi=100_000)
    test_per_class = o.get_int("test_per_class", 16, lo=1, hi=100_000)
    seed = o.get_int("seed", 0, lo=0)
    frames = o.get_int("frames", 48, lo=8, hi=10_000)
    noise = o.get_float("noise", 0.01, lo=0.0, hi=1.0)
    view = o.get_float("view", 45.0, lo=0.0, hi=180.0)
    req.expect_joints, req.expect_channels = lay.num_joints, lay.channels
    for split, n in (("train", per_class), ("test", test_per_class)):
        xs, ys, names = generate_split(lay, classes, n, seed, split, frames, noise, view)
        for x, y, nm in zip(xs, ys, names, strict=True):
            req.add(split, x, int(y), nm, req.spec)
    info = {"dataset": "synthetic", "protocol": "seeded", "seed": seed, "frames": frames, "classes": classes}
    return ReaderResult(lay, list(ACTIONS[:classes]), info)
