"""CONTRACT DOUBLE of NVIDIA's `tensorrt` Python package (runtime side, TensorRT 10 API) for the
tests. It is NOT TensorRT: its logits come from ONNX Runtime running the ONNX the trtexec double
embedded in the "engine", and its timings say nothing about TensorRT's speed. What it proves is
the contract: edgeskel's device runner deserializes the engine the build step wrote, asks only for
input shapes inside the engine's optimization profile, moves data through cudart, and reads back
logits of the right shape.

Implemented, exactly as documented for TensorRT 10.x (docs.nvidia.com/deeplearning/tensorrt/
latest/_static/python-api/infer/Core/...): `__version__`; `Logger` (+ severities); `Runtime(logger)`
with `DLA_core` and `deserialize_cuda_engine(bytes)` (None when the plan is not an engine of this
TensorRT version); `TensorIOMode`; `ICudaEngine.num_io_tensors`, `get_tensor_name(i)`,
`get_tensor_mode(name)`, `get_tensor_shape(name)` (-1 for dynamic axes),
`get_tensor_profile_shape(name, profile_index)` ([min, opt, max]), `create_execution_context()`;
`IExecutionContext.set_input_shape(name, shape)` (False outside the profile, as TensorRT),
`get_tensor_shape(name)`, `set_tensor_address(name, ptr)`, `execute_async_v3(stream_handle)`.
Anything else raises AttributeError: code that needs more of TensorRT than this cannot pass
with the double.
"""

from __future__ import annotations

import enum
import os
import sys

import numpy as np
from _double_engine import major_minor, read_engine

__edgeskel_contract_double__ = True
__version__ = os.environ.get("TENSORRT_DOUBLE_VERSION", "10.3.0")


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity: int = 2):
        self.min_severity = min_severity

    def log(self, severity: int, msg: str) -> None:
        if severity <= self.min_severity:
            print(f"[TRT double] {msg}", file=sys.stderr)


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger
        self._dla_core = -1

    @property
    def DLA_core(self) -> int:  # noqa: N802 - TensorRT's name
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, core: int) -> None:  # noqa: N802
        self._dla_core = int(core)

    def deserialize_cuda_engine(self, serialized_engine: bytes):
        parsed = read_engine(bytes(serialized_engine))
        if parsed is None:
            self.logger.log(Logger.ERROR, "deserialize_cuda_engine: not an engine (magic tag mismatch)")
            return None
        header, onnx_bytes = parsed
        if major_minor(header["tensorrt_version"]) != major_minor(__version__):
            # TensorRT refuses plans serialized by another version (engines are not portable).
            self.logger.log(Logger.ERROR, f"engine built by TensorRT {header['tensorrt_version']}, "
                                          f"this is {__version__}: version mismatch")
            return None
        if header.get("dla_core") is not None and self._dla_core not in (-1, header["dla_core"]):
            self.logger.log(Logger.ERROR, f"engine built for DLA core {header['dla_core']}, runtime set to {self._dla_core}")
            return None
        return ICudaEngine(header, onnx_bytes)


class ICudaEngine:
    def __init__(self, header: dict, onnx_bytes: bytes):
        import onnx

        self._header = header
        self._onnx = onnx_bytes
        proto = onnx.load_model_from_string(onnx_bytes)
        inits = {i.name for i in proto.graph.initializer}
        self._io: list[tuple[str, TensorIOMode, tuple[int, ...]]] = []
        for vi, mode in [*((i, TensorIOMode.INPUT) for i in proto.graph.input if i.name not in inits),
                         *((o, TensorIOMode.OUTPUT) for o in proto.graph.output)]:
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                         for d in vi.type.tensor_type.shape.dim)
            self._io.append((vi.name, mode, dims))
        self._session = None

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0]

    def _find(self, name: str):
        for io in self._io:
            if io[0] == name:
                return io
        raise KeyError(f"no tensor named {name!r}")

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._find(name)[1]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._find(name)[2]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        prof = self._header["profile"].get(name)
        if profile_index != 0 or prof is None:
            raise ValueError(f"no optimization profile {profile_index} for input {name!r}")
        return [tuple(prof["min"]), tuple(prof["opt"]), tuple(prof["max"])]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._session is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self._session = ort.InferenceSession(self._onnx, sess_options=so, providers=["CPUExecutionProvider"])
        return self._session.run(None, feeds)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self._engine = engine
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addr: dict[str, int] = {}

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(int(d) for d in shape)
        prof = self._engine._header["profile"].get(name)
        static = self._engine.get_tensor_shape(name)
        if prof is not None:
            ok = len(shape) == len(prof["min"]) and all(lo <= d <= hi for d, lo, hi in zip(shape, prof["min"], prof["max"], strict=False))
        else:
            ok = shape == static
        if not ok:
            print(f"[TRT double] IExecutionContext::setInputShape: {name} {shape} is outside the optimization "
                  f"profile {prof or static}", file=sys.stderr)
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self._engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self._shapes.get(name, self._engine.get_tensor_shape(name))
        batch = next(iter(self._shapes.values()))[0] if self._shapes else -1
        dims = self._engine.get_tensor_shape(name)
        return (batch, *dims[1:]) if dims and dims[0] == -1 else dims

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._engine._find(name)
        self._addr[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        from cuda.bindings import runtime as cudart

        inputs = [io for io in self._engine._io if io[1] == TensorIOMode.INPUT]
        outputs = [io for io in self._engine._io if io[1] == TensorIOMode.OUTPUT]
        if any(n not in self._shapes for n, _, _ in inputs) or any(n not in self._addr for n, _, _ in inputs + outputs):
            print("[TRT double] execute_async_v3: input shapes or tensor addresses not set", file=sys.stderr)
            return False
        feeds = {}
        for name, _, _ in inputs:
            shape = self._shapes[name]
            n = int(np.prod(shape)) * 4
            feeds[name] = np.frombuffer(cudart._device_bytes(self._addr[name], n), dtype=np.float32).reshape(shape)
        for (name, _, _), value in zip(outputs, self._engine._run(feeds), strict=False):
            cudart._device_write(self._addr[name], np.ascontiguousarray(value, dtype=np.float32).tobytes())
        return True


def __getattr__(name: str):
    raise AttributeError(f"tensorrt.{name} is not part of the TensorRT 10 API subset this contract double implements")
