"""ONNX graph walking shared by the exporter, the quantizers and the TensorRT lint (a ground
module, so the quantizers never import the export stage that imports them)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """All nodes including those inside If/Loop/Scan subgraphs."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_nodes(g)
