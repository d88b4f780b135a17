"""Streaming a user's own module: its forward traced into a graph, each op judged by measurement.

A registered architecture streams by rules written for its blocks (convert.py); a user's
module has no such rules -- its forward is their code. So the forward is traced with
torch.fx and every node is classified by running it:

- the *time axis* of each tensor is the one axis whose size changes when the input has
  another number of frames (two probe runs, T1 and T2 frames);
- a node is *per-frame* when perturbing one frame of its time-carrying inputs changes its
  output at that frame only (re-run on the recorded inputs; catches einsum, softmax over
  the wrong axis, reshapes that fold time into another axis, masks built from `t`, ...);
- a call of `nn.Conv2d` / `nn.MaxPool2d` on a (rows, C, T, V) tensor with a kernel, stride or
  padding along T is a *temporal layer*: it becomes `StreamConv` / `StreamMaxPool`;
- exactly one per-frame tensor may feed ops that are not per-frame: that is where the
  network pools over time (`pool input`); everything after it is the *head*, run on one
  output frame. Two such places (a mean over T inside a block, a head reading two stages)
  means a global temporal op before the pool: refused, naming the op.

The decision of a stream is the running mean of head(one frame) (semantics.py), so the
windowed output must equal the mean over frames of head(frame) on a probe: a max over time
or a non-affine head fails that check and is refused. Branches that meet get `Delay`s, as in
convert.py. `build_step_model` then checks the step model against the reference on a random
stream before anyone uses it, so what is not caught here (a forward that scales by its own
`t`) is refused rather than streamed wrong.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn

from edgeskel.stream.convert import Converter, NotStreamable
from edgeskel.stream.layers import Delay, StreamConv, StreamMaxPool, Timeline, pair

_T1, _T2, _N = 24, 40, 2  # probe lengths (network frames, multiples of 8) and streams per probe


@dataclass
class GraphPlan:
    """What the analysis found in one traced module."""

    gm: fx.GraphModule
    shape: tuple[int, int, int]  # C, V, M of the input
    axis: dict[str, int] = field(default_factory=dict)  # per-frame node -> its time axis
    frame: list[str] = field(default_factory=list)  # per-frame nodes, in order
    temporal: set[str] = field(default_factory=set)  # temporal layers (call_module)
    out_shape: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per-frame node -> shape at T1
    rate: dict[str, int] = field(default_factory=dict)  # input frames per frame of the node
    pool_input: str = ""
    stride: int = 1
    pool_op: str = ""  # the op that takes the pool input
    pooled: bool = False  # the head is not affine: a stream averages the pool input, then runs the head
    head_nodes: set[str] = field(default_factory=set)  # the nodes the head runs (from the pool input on)

    def node(self, name: str) -> fx.Node:
        return next(n for n in self.gm.graph.nodes if n.name == name)


class _Recorder(fx.Interpreter):
    """Runs the graph and keeps a copy of every value (in-place ops later in the forward must
    not change what was recorded). `override`: values given for some nodes; `only`: nodes to
    run (the others are skipped)."""

    def __init__(self, gm: fx.GraphModule, override: dict[str, object] | None = None, only: set[str] | None = None):
        super().__init__(gm)
        self.values: dict[str, object] = {}
        self.override = override or {}
        self.only = only

    def run_node(self, n: fx.Node):
        if n.name in self.override:
            out = self.override[n.name]
        elif self.only is not None and n.name not in self.only and n.op != "placeholder":
            return None
        else:
            out = super().run_node(n)
        self.values[n.name] = out.clone() if isinstance(out, torch.Tensor) else out
        return out


@contextlib.contextmanager
def _variable_is_identity(net: nn.Module):
    """`Variable(x)` (pre-0.4 GCN code) is a no-op today but fails on a tracing Proxy: while
    tracing, the name is bound to the identity in the globals of every forward in `net`."""
    patched = []
    forwards = [type(m).forward for m in net.modules()]
    for g in {id(f.__globals__): f.__globals__ for f in forwards if hasattr(f, "__globals__")}.values():
        for name, value in list(g.items()):
            if value is torch.autograd.Variable:
                patched.append((g, name, value))
                g[name] = lambda x, *args, **kwargs: x
    try:
        yield
    finally:
        for g, name, value in patched:
            g[name] = value


def _trace(net: nn.Module) -> fx.GraphModule:
    try:
        with _variable_is_identity(net):
            return fx.symbolic_trace(net)
    except Exception as exc:  # noqa: BLE001 -- any tracing failure is the user's forward: say it
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotStreamable(f"cannot trace its forward with torch.fx ({type(exc).__name__}: {msg}); a stream needs "
                            "to see every op (avoid Python control flow on tensor values in forward)") from None


def _run(gm: fx.GraphModule, x: torch.Tensor, what: str) -> dict[str, object]:
    rec = _Recorder(gm)
    try:
        with torch.no_grad():
            rec.run(x)
    except Exception as exc:  # noqa: BLE001
        raise NotStreamable(f"its forward fails on {what} ({type(exc).__name__}: {str(exc).strip()[:200]}); a stream "
                            "runs it on a few frames per call, so it must accept any number of frames") from None
    return rec.values


def _describe(n: fx.Node) -> str:
    target = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
    return f"`{target}` (graph node {n.name})"


def _temporal_kind(mod: nn.Module) -> tuple[int, int, int] | None:
    """(kernel, stride, padding) along T of a Conv2d / Conv1d / MaxPool2d / AvgPool2d, or None for
    other modules."""
    if isinstance(mod, (nn.Conv2d, nn.Conv1d)):
        return mod.kernel_size[0], mod.stride[0], mod.padding[0] if not isinstance(mod.padding, str) else -1
    if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
        return (pair(mod.kernel_size)[0], pair(mod.stride if mod.stride is not None else mod.kernel_size)[0],
                pair(mod.padding)[0])
    return None


def _is_local(interp: fx.Interpreter, n: fx.Node, values: dict[str, object], axis: dict[str, int]) -> bool:
    """Perturb one frame of every per-frame input of `n`; its output may change at that frame only.
    `interp`: one Interpreter of the graph, reused (building one walks the whole graph)."""
    ins = [a for a in n.all_input_nodes if a.name in axis]
    out = values[n.name]
    if not isinstance(out, torch.Tensor) or n.name not in axis:
        return False
    length = out.shape[axis[n.name]]
    if any(values[a.name].shape[axis[a.name]] != length for a in ins):
        return False
    gen = torch.Generator().manual_seed(0)
    for j in sorted({0, length // 2, length - 1}):
        runs = []
        for perturb in (False, True):
            env = {}
            for a in n.all_input_nodes:
                v = values[a.name]
                v = v.clone() if isinstance(v, torch.Tensor) else v
                if perturb and a.name in axis and v.is_floating_point():
                    sl = v.select(axis[a.name], j)
                    sl += torch.randn(sl.shape, generator=gen) * (sl.abs().mean() + 0.5)
                env[a] = v
            interp.env = env
            with torch.no_grad():
                runs.append(interp.run_node(n))
        if not isinstance(runs[1], torch.Tensor) or runs[1].shape != out.shape:
            return False
        diff = (runs[1] - runs[0]).abs().movedim(axis[n.name], 0).reshape(length, -1).amax(1)
        tol = 1e-6 * (1.0 + float(runs[0].abs().max()))
        if bool((diff[torch.arange(length) != j] > tol).any()):
            return False
    return True


def analyse(net: nn.Module, shape: tuple[int, int, int]) -> GraphPlan:
    """Trace `net` (input (N, C, T, V, M), `shape` = (C, V, M)) and classify its nodes; raises
    NotStreamable saying which op stops it."""
    c, v, m = shape
    gm = _trace(net)
    gen = torch.Generator().manual_seed(0)
    a = _run(gm, torch.randn(_N, c, _T1, v, m, generator=gen), f"{_T1} frames")
    b = _run(gm, torch.randn(_N, c, _T2, v, m, generator=gen), f"{_T2} frames")
    plan = GraphPlan(gm, shape)
    derived: set[str] = set()  # nodes computed from the input's values (not only its sizes)
    outside: list[tuple[str, fx.Node]] = []  # (per-frame node, an op that is not per-frame using it)
    modules = dict(gm.named_modules())
    interp = fx.Interpreter(gm)
    for n in gm.graph.nodes:
        va, vb = a.get(n.name), b.get(n.name)
        if n.op == "placeholder":
            derived.add(n.name)
            plan.axis[n.name], plan.rate[n.name] = 2, 1
            plan.frame.append(n.name)
            plan.out_shape[n.name] = tuple(va.shape)
            continue
        if n.op == "output":
            continue
        ins = n.all_input_nodes
        is_derived = isinstance(va, torch.Tensor) and any(i.name in derived for i in ins)
        varies = isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor) and va.shape != vb.shape
        if not is_derived and not varies:
            continue  # parameters, sizes, constants
        derived.add(n.name)
        dims = [d for d in range(va.dim()) if va.shape[d] != vb.shape[d]] if varies else []
        frame_ins = [i for i in ins if i.name in plan.axis]
        per_frame = False
        if len(dims) == 1 and all(i.name in plan.axis or i.name not in derived for i in ins) and is_derived:
            plan.axis[n.name] = dims[0]
            kind = _temporal_kind(modules[n.target]) if n.op == "call_module" else None
            if kind is not None and (kind[0] != 1 or kind[1] != 1 or kind[2] != 0):
                src = frame_ins[0]
                rank = 3 if isinstance(modules[n.target], nn.Conv1d) else 4
                if plan.axis[src.name] != 2 or dims[0] != 2 or va.dim() != rank:
                    raise NotStreamable(f"temporal layer {_describe(n)} must see {_LAYOUTS[rank]} tensors with T on "
                                        f"axis 2; it sees {tuple(a[src.name].shape)}")
                if va.shape[0] != _N * m:
                    raise NotStreamable(f"temporal layer {_describe(n)} sees {va.shape[0]} rows for {_N} streams of "
                                        f"{m} persons: a stream keeps one state row per stream x person")
                plan.temporal.add(n.name)
                plan.rate[n.name] = plan.rate[src.name] * kind[1]
                per_frame = True
            elif _is_local(interp, n, a, plan.axis):
                rates = {plan.rate[i.name] for i in frame_ins}
                if len(rates) > 1:
                    raise NotStreamable(f"{_describe(n)} joins branches at different frame rates {sorted(rates)}")
                plan.rate[n.name] = rates.pop()
                per_frame = True
            else:
                plan.axis.pop(n.name)
        if per_frame:
            plan.frame.append(n.name)
            plan.out_shape[n.name] = tuple(va.shape)
        else:
            outside.extend((i.name, n) for i in frame_ins)
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    if any(i.name in plan.axis for i in out_node.all_input_nodes):
        raise NotStreamable("its output keeps a time axis: a stream needs a model that averages over time at its end")
    if not outside:
        raise NotStreamable("no op pools its features over time (the output does not depend on the frames)")
    if len(outside) > 1:  # the final pool is the one op that may take frames and mix them
        first = outside[0][1]
        raise NotStreamable(f"{_describe(first)} mixes frames before the network's final pooling (its output at a "
                            "frame depends on other frames, e.g. a mean over T inside a block, attention across "
                            "frames); a stream cannot compute it from the frames it has seen")
    plan.pool_input, plan.pool_op = outside[0][0], outside[0][1].name
    plan.head_nodes = _ancestors(plan, "output", stop=plan.pool_input)
    plan.stride = plan.rate[plan.pool_input]
    _check_head_is_a_mean(plan, a)
    return plan


def features(plan: GraphPlan, x: torch.Tensor) -> torch.Tensor:
    """The pool input for input `x`, its time axis moved to 2 (what semantics.py indexes)."""
    rec = _Recorder(plan.gm, only=_ancestors(plan, plan.pool_input))
    with torch.no_grad():
        rec.run(x)
    return rec.values[plan.pool_input].movedim(plan.axis[plan.pool_input], 2)


def head(plan: GraphPlan, feat: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The network after its pool input, run on one output frame `feat` (time axis removed);
    sizes the forward reads from its input are those of one call (`stride` frames)."""
    c, v, _ = plan.shape
    one = feat.unsqueeze(2).movedim(2, plan.axis[plan.pool_input])
    rec = _Recorder(plan.gm, override={plan.pool_input: one}, only=plan.head_nodes)
    with torch.no_grad():
        return rec.run(torch.zeros(n, c, plan.stride, v, m))


def _ancestors(plan: GraphPlan, name: str, stop: str = "") -> set[str]:
    """`name` and every node it is computed from (not looking past `stop`)."""
    seen, todo = set(), [plan.node(name)]
    while todo:
        n = todo.pop()
        if n.name not in seen:
            seen.add(n.name)
            if n.name != stop:
                todo.extend(n.all_input_nodes)
    return seen


def _check_head_is_a_mean(plan: GraphPlan, values: dict[str, object]) -> None:
    """The windowed output on the probe must be the mean over output frames of head(frame) (an
    affine head: a stream averages per-frame logits) or head(mean of the frames) (any head: a
    stream averages the pool input's frames and runs the head on that, `pooled`)."""
    gm = plan.gm
    out = values[next(n for n in gm.graph.nodes if n.op == "output").all_input_nodes[0].name]
    feat = values[plan.pool_input].movedim(plan.axis[plan.pool_input], 2)
    _, _, m = plan.shape
    try:
        per_frame = torch.stack([head(plan, feat[:, :, t], _N, m) for t in range(feat.shape[2])]).mean(0)
        of_mean = head(plan, feat.mean(2), _N, m)
    except Exception as exc:  # noqa: BLE001
        raise NotStreamable(f"the network after {_describe(plan.node(plan.pool_input))} does not run on one frame "
                            f"({type(exc).__name__}: {str(exc).strip()[:160]})") from None

    def equal(y: torch.Tensor) -> bool:
        return isinstance(out, torch.Tensor) and y.shape == out.shape and \
            float((y - out).abs().max()) <= 1e-4 * (1.0 + float(out.abs().max()))

    if equal(per_frame):
        return
    if equal(of_mean):
        plan.pooled = True
        return
    raise NotStreamable(f"the network from {_describe(plan.node(plan.pool_op))} on is not a head applied to the mean "
                        "of its frames (it mixes frames: a max over time, or a temporal op with no stream form such "
                        "as a functional conv), so no running mean over a stream gives its decision")


def pooled_shape(plan: GraphPlan) -> tuple[int, ...] | None:
    """For a `pooled` plan, the pool input of one output frame of one stream, time axis removed
    (leading axis: its rows per stream); None when the stream averages logits."""
    if not plan.pooled:
        return None
    shape = list(plan.out_shape[plan.pool_input])
    del shape[plan.axis[plan.pool_input]]
    if shape[0] % _N:
        raise NotStreamable(f"its pool input {plan.pool_input} {tuple(plan.out_shape[plan.pool_input])} does not hold "
                            "the streams on its first axis")
    shape[0] //= _N
    return tuple(shape)


def convert(conv: Converter, plan: GraphPlan, tl: Timeline) -> tuple[fx.GraphModule, Timeline]:
    """Swap temporal layers for their stream forms and delay branches to one lag, in the
    traced graph (its modules are the network's own); returns it and the pool input's timeline."""
    gm, ctx = plan.gm, conv.ctx
    timelines: dict[str, Timeline] = {}
    delays = 0
    for name in plan.frame:
        n = plan.node(name)
        if n.op == "placeholder":
            timelines[name] = tl
            continue
        ins = [i for i in n.all_input_nodes if i.name in timelines]
        if name in plan.temporal:
            mod = gm.get_submodule(n.target)
            src = plan.out_shape[ins[0].name]
            if isinstance(mod, nn.Conv1d):
                new = _Rank3(StreamConv(_as_conv2d(mod), timelines[ins[0].name], ctx, width=1))
            elif isinstance(mod, nn.Conv2d):
                new = StreamConv(mod, timelines[ins[0].name], ctx, width=src[3])
            elif isinstance(mod, nn.AvgPool2d):
                new = StreamConv(_avg_pool_as_conv(mod, src[1]), timelines[ins[0].name], ctx, width=src[3])
            else:
                new = StreamMaxPool(mod, timelines[ins[0].name], ctx, src[1], width=src[3])
            _set_submodule(gm, n.target, new)
            timelines[name] = new.timeline
            continue
        tls = {i.name: timelines[i.name] for i in ins}
        lag = max((t.lag for t in tls.values()), default=0)
        if len({t.n for t in tls.values()}) > 1 or \
                len({tuple(t.length_for(f) for f in range(64)) for t in tls.values()}) > 1:
            raise NotStreamable(f"{_describe(n)} joins branches that give different frames for the same input")
        for i in ins:
            if tls[i.name].lag == lag:
                continue
            shp = plan.out_shape[i.name]
            if plan.axis[i.name] != 2 or len(shp) not in _LAYOUTS or shp[0] != _N * plan.shape[2]:
                raise NotStreamable(f"{_describe(n)} joins branches of different delays, and its input {i.name} "
                                    f"{shp} is not a (rows, C, T, V) or (rows, C, T) tensor a delay can hold")
            delays += 1
            target = f"stream_delay_{delays}"
            delay = Delay(lag - tls[i.name].lag, shp[1], ctx, width=shp[3] if len(shp) == 4 else 1)
            gm.add_submodule(target, delay if len(shp) == 4 else _Rank3(delay))
            with gm.graph.inserting_before(n):
                d = gm.graph.call_module(target, (i,))
            n.replace_input_with(i, d)
        first = next(iter(tls.values()))  # a per-frame node has at least one per-frame input
        timelines[name] = Timeline(first.n, lag, first.length, first.ops)
    if plan.pooled:  # the step network returns the pool input's newest frame; StepModel runs the head
        out = next(n for n in gm.graph.nodes if n.op == "output")
        out.args = (plan.node(plan.pool_input),)
    gm.graph.lint()
    gm.recompile()
    return gm, timelines[plan.pool_input]


_LAYOUTS = {3: "(rows, C, T)", 4: "(rows, C, T, V)"}


class _Rank3(nn.Module):
    """A stream layer of (rows, C, T, V) tensors applied to (rows, C, T) ones (a Conv1d along T)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.timeline = getattr(inner, "timeline", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.unsqueeze(-1)).squeeze(-1)


def _as_conv2d(conv: nn.Conv1d) -> nn.Conv2d:
    """The same convolution along T of (rows, C, T, 1) tensors (weights copied: the step model
    is for inference); its padding and padding mode carried over, for StreamConv to judge."""
    padding = conv.padding if isinstance(conv.padding, str) else (conv.padding[0], 0)
    new = nn.Conv2d(conv.in_channels, conv.out_channels, (conv.kernel_size[0], 1), (conv.stride[0], 1), padding,
                    (conv.dilation[0], 1), conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        new.weight.copy_(conv.weight.unsqueeze(-1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _avg_pool_as_conv(pool: nn.AvgPool2d, channels: int) -> nn.Conv2d:
    """An AvgPool2d that counts its zero padding (the default) is a depthwise conv with equal
    weights, which streams like any temporal conv."""
    if pool.ceil_mode or not pool.count_include_pad or pool.divisor_override:
        raise NotStreamable(f"temporal {pool} (ceil_mode, count_include_pad=False or divisor_override): only the "
                            "default average pool, zero padding counted, has a streaming form")
    k = pair(pool.kernel_size)
    conv = nn.Conv2d(channels, channels, k, pair(pool.stride if pool.stride is not None else k), pair(pool.padding),
                     groups=channels, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (k[0] * k[1]))
    return conv


def _set_submodule(gm: nn.Module, target: str, new: nn.Module) -> None:
    parent, _, leaf = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, new)


class GraphFamilyCache:
    """One analysis per module object (the reference model and the stream copy are two)."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = shape
        self._plans: weakref.WeakKeyDictionary[nn.Module, GraphPlan] = weakref.WeakKeyDictionary()

    def plan(self, net: nn.Module) -> GraphPlan:
        if net not in self._plans:
            self._plans[net] = analyse(net, self.shape)
        return self._plans[net]

    def check(self, net: nn.Module) -> None:
        """Refuse (NotStreamable, with the op that stops it) before any copy is made."""
        self.plan(net)


__all__ = ["GraphFamilyCache", "GraphPlan", "analyse", "convert", "features", "head"]
