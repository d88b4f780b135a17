"""Graph builders on top of `SkeletonLayout`, one per official code base.

The three reference implementations build their (K, V, V) graphs differently:
CTR-GCN/Hyperformer use "spatial" (identity, normalised inward, normalised outward),
PYSKL ST-GCN uses "stgcn_spatial" (hop distance + distance-to-centre partitioning), and
Hyperformer additionally needs pairwise hop distances to index its relative positional
embedding. Some official code also uses slightly different edge lists than our layout (e.g.
PYSKL's and Hyperformer's NTU graph connect the hand tips to the wrists), so every builder
accepts an optional `edges` override (0-based (child, parent) pairs); models carry it in
their kwargs so an imported checkpoint rebuilds exactly the official graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeskel.errors import ConfigError
from edgeskel.layouts import SkeletonLayout, hop_distance, normalize_digraph

Edges = tuple[tuple[int, int], ...]

# PYSKL `nturgb+d` and Hyperformer graph/ntu_rgb_d.py inward edges (1-based in the sources):
# identical to CTR-GCN's except that the hand tips/thumbs hang off the hands.
NTU25_HANDS_TO_WRIST_EDGES: Edges = tuple(
    (a - 1, b - 1)
    for a, b in [
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (22, 8), (23, 8), (24, 12), (25, 12),
    ]
)


def resolve_edges(layout: SkeletonLayout, edges: Sequence[Sequence[int]] | None = None) -> Edges:
    """The layout's bones, or a validated override list of 0-based (i, j) pairs."""
    if edges is None:
        return tuple(layout.bones)
    v = layout.num_joints
    out: list[tuple[int, int]] = []
    for pair in edges:
        if len(pair) != 2:
            raise ConfigError(f"graph edges: {pair!r} is not an (i, j) pair")
        a, b = int(pair[0]), int(pair[1])
        if not (0 <= a < v and 0 <= b < v) or a == b:
            raise ConfigError(f"graph edges: ({a}, {b}) invalid for layout {layout.name!r} with {v} joints")
        out.append((a, b))
    return tuple(out)


def edges_to_kwarg(edges: Sequence[Sequence[int]]) -> list[list[int]]:
    """Plain nested lists: JSON- and weights_only-friendly form for ModelSpec.kwargs."""
    return [[int(a), int(b)] for a, b in edges]


def _edge_matrix(v: int, edges: Edges) -> np.ndarray:
    a = np.zeros((v, v), dtype=np.float64)
    for i, j in edges:
        a[j, i] = 1.0
    return a


def ctrgcn_spatial(layout: SkeletonLayout, edges: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """(3, V, V) float32: identity, normalised inward, normalised outward (CTR-GCN `spatial`)."""
    inward = resolve_edges(layout, edges)
    outward = tuple((j, i) for i, j in inward)
    v = layout.num_joints
    return np.stack(
        [np.eye(v), normalize_digraph(_edge_matrix(v, inward)), normalize_digraph(_edge_matrix(v, outward))]
    ).astype(np.float32)


def stgcn_spatial(
    layout: SkeletonLayout, edges: Sequence[Sequence[int]] | None = None, max_hop: int = 1
) -> np.ndarray:
    """PYSKL `stgcn_spatial`: per hop, split neighbours into "closer/equal to the centre" and
    "further from the centre"; (1 + 2*max_hop, V, V) float32.

    Distances beyond `max_hop` are infinite, exactly as in PYSKL (so for joints far from the
    centre the close/further comparison sees inf >= inf); keeping that quirk is what makes
    imported weights reproduce the official logits.
    """
    inward = resolve_edges(layout, edges)
    v = layout.num_joints
    hop = hop_distance(v, inward, max_hop)
    adj = (hop <= max_hop).astype(np.float64)
    norm = normalize_digraph(adj)
    center = layout.center
    parts = []
    for h in range(max_hop + 1):
        close = np.zeros((v, v))
        further = np.zeros((v, v))
        for i in range(v):
            for j in range(v):
                if hop[j, i] == h:
                    if hop[j, center] >= hop[i, center]:
                        close[j, i] = norm[j, i]
                    else:
                        further[j, i] = norm[j, i]
        parts.append(close)
        if h > 0:
            parts.append(further)
    return np.stack(parts).astype(np.float32)


def hop_distances(layout: SkeletonLayout, edges: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """(V, V) int64 hop distances on the undirected graph, 0 where unreachable (Hyperformer's
    `MHSA.hops`, which indexes the relative positional embedding `rpe`)."""
    inward = resolve_edges(layout, edges)
    dist = hop_distance(layout.num_joints, inward, None)
    dist[~np.isfinite(dist)] = 0
    return dist.astype(np.int64)


def part_matrices(parts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Hyperformer hyperedges: (V, P) column-normalised one-hot (joint -> part average) and its
    (P, V) 0/1 transpose (part -> joints scatter). Precomputed so the exported graph is two
    constant MatMuls instead of one_hot + gather."""
    labels = np.asarray(list(parts), dtype=np.int64)
    if labels.ndim != 1 or labels.size == 0 or labels.min() < 0:
        raise ConfigError(f"hyperedge part labels must be non-negative integers per joint, got {list(parts)}")
    p = int(labels.max()) + 1
    onehot = np.zeros((labels.size, p), dtype=np.float64)
    onehot[np.arange(labels.size), labels] = 1.0
    counts = onehot.sum(0)
    if (counts == 0).any():
        empty = [int(i) for i in np.flatnonzero(counts == 0)]
        raise ConfigError(f"hyperedge part labels {list(parts)}: part ids {empty} have no joints (ids must be 0..P-1)")
    return (onehot / counts).astype(np.float32), onehot.T.astype(np.float32)
