"""One ONNX Runtime session per run, on the execution provider the user asked for."""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform
import threading

import numpy as np

from .errors import InferenceError, ModelContractError

DEVICES = ("auto", "cpu", "cuda")
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
    """An ONNX Runtime InferenceSession for ``path`` running on ``threads`` threads (default: the
    physical cores), or a ModelContractError saying why not. Optimised on the CPU, the session
    comes from this machine's cached optimised graph when there is one, and leaves one otherwise."""
    import onnxruntime

    path = check_model_file(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                        else onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL)
    cached = optimised_graph_path(path) if optimise and providers == [CPU] else None
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
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # ONNX Runtime raises several unrelated types for a bad file
        raise ModelContractError(
            f"The model file '{path}' could not be loaded as an ONNX model ({error}). "
            f"Check that it is a complete .onnx file exported for this plugin.") from error
    finally:
        if partial is not None:
            try:
                if partial.is_file():
                    os.replace(partial, cached)
            except OSError:
                partial.unlink(missing_ok=True)
    return session


def optimised_graph_path(model_path) -> pathlib.Path | None:
    """Where this machine keeps ONNX Runtime's optimised graph of ``model_path`` (None: nowhere).

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
    return folder / f"{pathlib.Path(model_path).stem}-{key.hexdigest()[:20]}.ort.onnx"


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
    """The model, loaded once and reused for every batch of tiles."""

    def __init__(self, path, device: str, threads: int | None = None):
        self.path = str(path)
        self.threads = threads or physical_cores()
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
                f"it has {len(inputs)} input(s) and {len(outputs)} output(s). See model/inference/CONTRACT.md.")
        self.input_name = inputs[0].name
        height, width = inputs[0].shape[2:]
        # A fixed spatial size is an int in the graph; a dynamic one is a name or None.
        fixed = isinstance(height, int), isinstance(width, int)
        if fixed[0] != fixed[1] or (all(fixed) and height != width):
            raise ModelContractError(
                f"The model '{self.path}' has input size {height} x {width}; it must be square and fixed, "
                f"or dynamic. See model/inference/CONTRACT.md.")
        self.fixed_tile_size = height if all(fixed) else None

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw scores (N, C, H, W) for a float32 batch (N, 1, H, W)."""
        return self.session.run(None, {self.input_name: batch})[0]
