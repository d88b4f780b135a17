"""Name the architecture of a checkpoint no importer accepts, from its key names.

Why: "missing keys (730) ... unexpected keys (210)" tells a user nothing; "this is Shift-GCN,
which edgeskel does not import" tells them what to do. This is consulted only after every
registered importer declined, so an entry here never hides a supported source: when a source
gets an importer, its entry simply stops being reached.
"""

from __future__ import annotations

from collections.abc import Callable

# (architecture and code base, test on the set of keys)
_SIGNATURES: tuple[tuple[str, Callable[[set[str]], bool]], ...] = (
    ("MS-G3D (official kenziyuliu/MS-G3D)",
     lambda ks: any(k.startswith("gcn3d1.") for k in ks) and any(k.startswith("sgcn1.") for k in ks)),
    ("2s-AGCN / AGCN (official lshiwjx/2s-AGCN)",
     lambda ks: any(k.endswith("gcn1.conv_a.0.weight") for k in ks) and not any(k.startswith("backbone.") for k in ks)),
    ("ST-GCN (official yysijie/st-gcn or mmskeleton)",
     lambda ks: any(k.startswith("st_gcn_networks.") for k in ks)),
    ("InfoGCN (stnoah1/infogcn)", lambda ks: any(k.startswith(("A_vector", "to_joint_embedding")) for k in ks)),
    ("SGN (microsoft/SGN or PYSKL SGN)", lambda ks: any("joint_embed" in k for k in ks) and any("dif_embed" in k for k in ks)),
    ("DG-STGCN (PYSKL)", lambda ks: any(".gcn.pre." in k for k in ks) and any("add_coeff" in k for k in ks)),
    ("PoseConv3D / a 3D-CNN (PYSKL or mmaction2)",
     lambda ks: any(k.startswith("backbone.") and k.endswith("conv1.conv.weight") for k in ks)
     and not any(".gcn" in k for k in ks)),
)


def identify(keys: set[str]) -> str | None:
    """The architecture these keys belong to, if it is a known unsupported one."""
    for name, test in _SIGNATURES:
        if test(keys):
            return name
    return None
