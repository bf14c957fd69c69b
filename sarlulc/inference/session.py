"""One ONNX Runtime session per run, on the execution provider the user asked for."""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform
import threading
from typing import Callable

import numpy as np

from ..errors import InferenceError, ModelContractError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16")
HALF_PRECISION_AGREEMENT = 0.99
"""Share of the first batch's pixels whose class half precision must keep for "auto" to use it."""
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
CACHE_ENV = "SAR_LULC_CACHE"
_CUDA_HELP = ("Install the GPU build of ONNX Runtime (pip install onnxruntime-gpu) with a matching CUDA, "
              "on a machine with an NVIDIA CUDA GPU, or choose the 'cpu' device.")


def providers_for(device: str) -> list[str]:
    """Execution providers to request for ``device`` ("auto" = CUDA when this ONNX Runtime has it)."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device == "cuda":
        if CUDA not in available:
            raise InferenceError(f"The 'cuda' device is not available: this ONNX Runtime offers only "
                                 f"{', '.join(available)}. {_CUDA_HELP}")
        return [CUDA, CPU]
    if device == "auto" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def check_model_file(path) -> pathlib.Path:
    """``path`` as a Path once it is an existing file, or a ModelContractError saying what it is instead."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ModelContractError(f"The model '{path}' is a folder; choose the .onnx model file itself.")
    if not path.is_file():
        raise ModelContractError(f"The model file '{path}' does not exist. Check the path, or choose another model.")
    return path


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity), the most threads that can run at once."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads share a core's arithmetic units, so the
    model runs no faster on them); the logical count where the topology cannot be read."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in allowed:
        topology = pathlib.Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            return max(1, len(allowed))
    return max(1, len(cores))


def load_session(path, providers: list[str], optimise: bool = True, threads: int | None = None):
    """An ONNX Runtime InferenceSession for ``path`` (a file, or a graph's bytes) running on ``threads``
    threads (default: the physical cores), or a ModelContractError saying why not. Optimised on the
    CPU, the session comes from this machine's cached optimised graph when there is one, and leaves
    one otherwise."""
    import onnxruntime

    in_memory = isinstance(path, bytes)
    path = path if in_memory else check_model_file(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                        else onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL)
    cached = cached_graph_path(path) if optimise and providers == [CPU] and not in_memory else None
    if cached is not None and cached.is_file():
        try:
            return onnxruntime.InferenceSession(str(cached), options, providers=providers)
        except Exception:  # a damaged cache entry: made again below
            cached.unlink(missing_ok=True)
    partial = None
    if cached is not None and _writable_folder(cached.parent):
        partial = cached.with_name(f".{cached.name}.{os.getpid()}-{threading.get_ident()}.partial")
        options.optimized_model_filepath = str(partial)
        options.log_severity_level = 3  # not the warning that the graph saved suits this machine only: it is known
    try:
        session = onnxruntime.InferenceSession(path if in_memory else str(path), options, providers=providers)
    except Exception as error:  # ONNX Runtime raises several unrelated types for a bad file
        raise ModelContractError(
            f"The model file '{'(in memory)' if in_memory else path}' could not be loaded as an ONNX model ({error}). "
            f"Check that it is a complete .onnx file exported for this plugin.") from error
    finally:
        if partial is not None:
            try:
                if partial.is_file():
                    os.replace(partial, cached)
            except OSError:
                partial.unlink(missing_ok=True)
    return session


def cached_graph_path(model_path, kind: str = "ort") -> pathlib.Path | None:
    """Where this machine keeps a graph made from ``model_path`` (None: nowhere): ``kind`` "ort" for
    ONNX Runtime's optimised graph, "fp16" for the half-precision copy.

    Optimising the bundled models takes about a second, longer than a small run's model time;
    the result is specific to the CPU and the ONNX Runtime version, so it is cached per model
    contents, CPU and version, in $SAR_LULC_CACHE (``off``: no cache) or ~/.cache/sar_lulc.
    """
    import onnxruntime

    folder = os.environ.get(CACHE_ENV, "")
    if folder.lower() == "off":
        return None
    folder = pathlib.Path(folder) if folder else pathlib.Path.home() / ".cache" / "sar_lulc"
    key = hashlib.sha256()
    with open(model_path, "rb") as model:
        for chunk in iter(lambda: model.read(1 << 20), b""):
            key.update(chunk)
    key.update(f"{onnxruntime.__version__}|{platform.machine()}|{_cpu_identity()}".encode())
    return folder / f"{pathlib.Path(model_path).stem}-{key.hexdigest()[:20]}.{kind}.onnx"


def half_precision_graph(model_path):
    """The model with float16 weights and arithmetic, float32 input and output (the graph's
    interface is unchanged): its cached file, or its bytes where nothing can be cached. Needs the
    ``onnx`` package (an InferenceError says so when it is missing)."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as error:
        raise InferenceError(f"Half precision needs the 'onnx' package ({error}); install it beside "
                             f"onnxruntime (pip install onnx), or run in fp32.") from error
    cached = cached_graph_path(model_path, "fp16")
    if cached is not None and cached.is_file():
        return cached
    try:
        half = convert_float_to_float16(onnx.load(str(model_path)), keep_io_types=True).SerializeToString()
    except Exception as error:  # onnx and the converter raise several unrelated types
        raise InferenceError(f"The model could not be converted to half precision ({error}); run in fp32.") \
            from error
    if cached is None or not _writable_folder(cached.parent):
        return half
    partial = cached.with_name(f".{cached.name}.{os.getpid()}-{threading.get_ident()}.partial")
    partial.write_bytes(half)
    os.replace(partial, cached)
    return cached


def _cpu_identity() -> str:
    """The CPU's model name and instruction-set flags (what optimised kernels depend on)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "|".join(dict.fromkeys(lines))


def _writable_folder(folder: pathlib.Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


class ModelSession:
    """The model, loaded once and reused for every batch of tiles.

    ``precision``: "fp32"; "fp16" (half precision, the graph converted once and cached); "auto":
    fp16 on a GPU when it classifies the first batch as fp32 does (`settle_precision`), else fp32
    (on the CPU, fp16 and INT8 run no faster: README, Speed and memory)."""

    def __init__(self, path, device: str, threads: int | None = None, precision: str = "auto"):
        if precision not in PRECISIONS:
            raise InferenceError(f"Precision '{precision}' is unknown: use one of {', '.join(PRECISIONS)}.")
        self.path = str(path)
        # More threads than the CPUs this process may use only make them wait on each other.
        self.threads = min(threads, usable_cpus()) if threads else physical_cores()
        requested = providers_for(device)
        self.session = load_session(path, requested, threads=self.threads)
        self.providers = self.session.get_providers()
        if device == "cuda" and CUDA not in self.providers:
            raise InferenceError(f"ONNX Runtime could not start CUDA for this model and fell back to "
                                 f"{', '.join(self.providers)}. {_CUDA_HELP}")
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelContractError(
                f"The model '{self.path}' must have one input (N, 1, H, W) and one output (N, C, H, W); "
                f"it has {len(inputs)} input(s) and {len(outputs)} output(s). See model/CONTRACT.md.")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        height, width = inputs[0].shape[2:]
        # A fixed spatial size is an int in the graph; a dynamic one is a name or None.
        fixed = isinstance(height, int), isinstance(width, int)
        if fixed[0] != fixed[1] or (all(fixed) and height != width):
            raise ModelContractError(
                f"The model '{self.path}' has input size {height} x {width}; it must be square and fixed, "
                f"or dynamic. See model/CONTRACT.md.")
        self.fixed_tile_size = height if all(fixed) else None
        self.on_gpu = CUDA in self.providers
        self.precision = "fp32"
        self.precision_note = None  # why fp16 was not tried, when it was wanted
        self._half = None  # the fp16 session until the first batch settles which one runs
        self._half_forced = precision == "fp16"
        if self._half_forced or (precision == "auto" and self.on_gpu):
            try:
                self._half = load_session(half_precision_graph(path), self.providers, threads=self.threads)
            except InferenceError as error:
                if self._half_forced:
                    raise
                self.precision_note = f"Precision: fp32 ({error})"

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def precision_pending(self) -> bool:
        """Whether the next batch should go through `settle_precision` (an fp16 candidate is loaded)."""
        return self._half is not None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw scores (N, C, H, W) for a float32 batch (N, 1, H, W)."""
        return self._run(self.session, batch)

    def _run(self, session, batch: np.ndarray) -> np.ndarray:
        if not self.on_gpu:
            return session.run(None, {self.input_name: batch})[0]
        # On a GPU, input and output bound to host memory: the batch goes to the device in one copy
        # before the run and the scores come back in one copy at its end (the blending that follows
        # runs on the CPU, so keeping them on the device would gain nothing).
        binding = session.io_binding()
        binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch, dtype=np.float32))
        binding.bind_output(self.output_name, "cpu")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def settle_precision(self, batch: np.ndarray, classes: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, str]:
        """Run ``batch`` in fp32 and fp16, keep fp16 for the rest of the run when the share of pixels
        ``classes`` (scores to class per pixel) puts in the same class reaches HALF_PRECISION_AGREEMENT
        (or when fp16 was asked for); returns the fp32 scores and a log line saying what was chosen."""
        full = self.run(batch)
        half = self._run(self._half, batch)
        agreement = float(np.mean(classes(half) == classes(full)))
        keep = self._half_forced or agreement >= HALF_PRECISION_AGREEMENT
        if keep:
            self.session, self.precision = self._half, "fp16"
        self._half = None
        line = (f"Precision: {self.precision} (fp16 gives the same class as fp32 on {agreement:.2%} of the first "
                f"batch's pixels" + (")" if self._half_forced else
                                     f"; fp16 is used from {HALF_PRECISION_AGREEMENT:.0%})"))
        return full, line
