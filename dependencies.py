"""The plugin's runtime Python dependencies: where they live, how they get there, how they are checked.

QGIS runs plugins in its own Python, not in a project venv. The plugin keeps onnxruntime in a
folder of the QGIS profile, outside the plugin folder, so that upgrading the plugin (from a ZIP
or the plugin manager, which replace the plugin folder) keeps it:

    <profile>/python/dependencies/sar_lulc/python3.11/

one folder per Python version, because a compiled wheel only imports in the Python it was built
for. That folder goes first on ``sys.path`` when the plugin loads.

pip runs with QGIS's own interpreter, found from the running Python (``sys.exec_prefix`` and its
version) and checked to be that very Python: inside QGIS, ``sys.executable`` may be whatever
``python3`` comes first on PATH (a pyenv shim, a conda env of another version). pip runs with
``--no-deps``: numpy must stay QGIS's own (a second numpy ahead of it would break the GDAL and
QGIS bindings), and onnxruntime's other declared dependencies (protobuf, flatbuffers, packaging)
are not imported for inference. An installation counts as done only once onnxruntime imports
in QGIS's Python from that folder.

Also a script, so that ``make deploy`` runs the very same commands:
``python3 dependencies.py --profile PROFILE_FOLDER [--gpu]``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
PLUGIN_NAME = "sar_lulc"
REQUIREMENTS = PLUGIN_DIR / "requirements-runtime.txt"
MODULE = "onnxruntime"
GPU_PACKAGE = "onnxruntime-gpu"
INSTALL_MENU = "Plugins ▸ SAR LULC ▸ Install dependencies…"
# Training (sarlulc:train) also needs PyTorch, onnx (export) and rasterio (training's raster reads), an
# optional extra: Segment and Water Detect never import them. Installed with --no-deps like onnxruntime, so
# numpy stays QGIS's own; their pure-Python dependencies are listed. PyTorch's CPU build comes from its
# own index, the rest from PyPI.
TORCH_MODULE = "torch"
TRAINING_MODULES = (TORCH_MODULE, "onnx", "rasterio")
TRAINING_PACKAGES = ("torch", "filelock", "typing-extensions", "sympy", "mpmath", "networkx", "jinja2", "MarkupSafe",
                     "fsspec", "onnx", "protobuf", "rasterio", "affine", "attrs", "certifi", "click", "cligj",
                     "click-plugins")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_DOWNLOAD = "about 200 MB for the CPU build, about 2.5 GB for the GPU (CUDA) build"
PYTHON_TAG = f"python{sys.version_info.major}.{sys.version_info.minor}"
# How the running Python identifies itself; a candidate interpreter must print the same.
_IDENTITY_CODE = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.prefix)"


class DependencyError(Exception):
    """The dependencies cannot be installed or checked; the message says what to do."""


def dependencies_dir(profile_dir=None) -> Path | None:
    """``<profile>/python/dependencies/sar_lulc/<pythonX.Y>/`` of ``profile_dir`` (default: the running
    QGIS profile); None when no QGIS profile is known (QGIS not initialised)."""
    if profile_dir is None:
        from qgis.core import QgsApplication

        profile_dir = QgsApplication.qgisSettingsDirPath()
        if not profile_dir:
            return None
    return Path(profile_dir) / "python" / "dependencies" / PLUGIN_NAME / PYTHON_TAG


def add_dependencies_to_path(folder: Path | None = None) -> None:
    """Put the dependencies folder first on sys.path so its onnxruntime wins over any other copy."""
    folder = folder or dependencies_dir()
    if folder is not None and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
        importlib.invalidate_caches()


def runtime_requirements(gpu: bool = False) -> list[str]:
    """The requirement lines of requirements-runtime.txt; ``gpu`` swaps in onnxruntime-gpu."""
    requirements = []
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        if gpu and requirement.startswith(MODULE) and not requirement.startswith(GPU_PACKAGE):
            requirement = GPU_PACKAGE + requirement[len(MODULE):]
        requirements.append(requirement)
    return requirements


def interpreter_candidates() -> list[Path]:
    """Where QGIS's Python may be, most likely first: beside the running Python's prefix (Linux,
    macOS: bin/pythonX.Y; Windows/OSGeo4W: apps/PythonXY/python3.exe), then what Python itself
    reports, then PATH."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = []
    for prefix in dict.fromkeys((sys.exec_prefix, sys.base_exec_prefix)):
        prefix = Path(prefix)
        candidates += [prefix / "bin" / f"python{version}", prefix / "bin" / "python3",
                       prefix / "python3.exe", prefix / "python.exe"]
    candidates += [Path(path) for path in (getattr(sys, "_base_executable", ""), sys.executable) if path]
    candidates += [Path(found) for found in map(shutil.which, (f"python{version}", "python3")) if found]
    return list(dict.fromkeys(candidates))


def interpreter_identity(python) -> tuple[str, str] | None:
    """(version "X.Y", sys.prefix) that ``python`` reports, or None when it does not run."""
    try:
        run = subprocess.run([str(python), "-c", _IDENTITY_CODE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = run.stdout.splitlines()
    return (lines[0].strip(), lines[1].strip()) if run.returncode == 0 and len(lines) >= 2 else None


def _same_path(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


@functools.lru_cache(maxsize=1)
def qgis_python() -> str:
    """The interpreter of the Python QGIS runs: same version and same installation (sys.prefix) as
    the running one, so pip installs wheels QGIS can import. Raises DependencyError when none is found."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    tried = []
    for candidate in interpreter_candidates():
        if not candidate.is_file():
            continue
        identity = interpreter_identity(candidate)
        if identity is not None and identity[0] == version and _same_path(identity[1], sys.prefix):
            return str(candidate)
        tried.append(f"{candidate} ({'Python %s in %s' % identity if identity else 'does not run'})")
    raise DependencyError(
        f"Could not find the interpreter of QGIS's Python {version} (installed in {sys.prefix}); "
        f"tried: {'; '.join(tried) or 'no candidate exists'}. Install onnxruntime from a shell with that "
        f"Python: python{version} -m pip install --no-deps --target \"{dependencies_dir()}\" onnxruntime")


def pip_environment() -> dict:
    """QGIS's environment without the pip settings that contradict ``--target`` (user site, prefix,
    "virtualenv only"); everything else stays, so the child Python sees what QGIS's Python sees."""
    return {key: value for key, value in os.environ.items()
            if key not in ("PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_REQUIRE_VIRTUALENV")}


def pip_install_command(target: Path, python: str, gpu: bool = False, requirements: list[str] | None = None) -> list[str]:
    """The pip command that fills ``target`` (the dialog and `make deploy` both run it)."""
    return [python, "-m", "pip", "install", "--upgrade", "--no-deps", "--disable-pip-version-check",
            "--target", str(target), *(requirements or runtime_requirements(gpu))]


def import_check_command(target: Path, python: str, module: str = MODULE) -> list[str]:
    """A command that imports ``module`` from ``target`` in ``python`` (with QGIS's own numpy) and
    prints its version and location: the proof that the installation works in QGIS's Python."""
    code = (f"import sys; sys.path.insert(0, {str(target)!r}); import {module} as m; "
            f"print(getattr(m, '__version__', '?'), m.__file__)")
    return [python, "-c", code]


def torch_install_command(target: Path, python: str, gpu: bool = False) -> list[str]:
    """pip command that adds what training needs to ``target``: PyTorch's CPU build unless ``gpu``
    (PyPI's CUDA build)."""
    index = [] if gpu else ["--index-url", TORCH_CPU_INDEX, "--extra-index-url", "https://pypi.org/simple"]
    return [python, "-m", "pip", "install", "--upgrade", "--no-deps", "--disable-pip-version-check", "--target",
            str(target), *index, *TRAINING_PACKAGES]


def install_steps(target: Path, python: str, gpu: bool = False, torch: bool = False) -> list[tuple[str, list[str]]]:
    """(what it does, command) of an installation, in order; the dialog and the script run them.
    ``torch``: also PyTorch, for training (about 200 MB on CPU)."""
    steps = [("pip install", pip_install_command(target, python, gpu)),
             (f"import check in {python}", import_check_command(target, python))]
    if torch:
        steps += [("pip install torch", torch_install_command(target, python, gpu)),
                  (f"torch import check in {python}", import_check_command(target, python, TORCH_MODULE))]
    return steps


def import_in_qgis(target: Path, module: str = MODULE) -> str:
    """Import ``module`` from ``target`` in this (QGIS's) Python; returns what to tell the user.

    Raises DependencyError when it does not import. When an older copy is already loaded, the new
    one is used after a restart."""
    add_dependencies_to_path(target)
    # The folder may have been created after it went on sys.path (at plugin load): forget that it was missing.
    sys.path_importer_cache.pop(str(target), None)
    importlib.invalidate_caches()
    loaded = sys.modules.get(module)
    if loaded is not None:
        if Path(loaded.__file__).resolve().is_relative_to(Path(target).resolve()):
            return f"{module} {getattr(loaded, '__version__', '')} is loaded from {target}; restart QGIS to use the new version."
        return f"{module} is installed in {target}; restart QGIS to use it instead of {loaded.__file__}."
    try:
        imported = importlib.import_module(module)
    except ImportError as error:
        raise DependencyError(f"{module} was installed into {target} but does not import in QGIS's Python "
                              f"{sys.version.split()[0]}: {error}") from error
    return f"{module} {getattr(imported, '__version__', '')} works in QGIS's Python (from {Path(imported.__file__).parent})."


def installation_problem(folder: Path | None = None, module: str = MODULE) -> str | None:
    """What is wrong with the installed ``module`` (onnxruntime), from its files alone (no import: cheap
    enough for QGIS start-up); None when it looks usable. Catches a missing installation, one made
    for another Python version only, and compiled files built for another Python."""
    folder = folder or dependencies_dir()
    spec = sys.modules[module].__spec__ if module in sys.modules else importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        others = sorted(path.parent.name for path in (folder.parent.glob(f"*/{module}") if folder else ())
                        if path.parent.name != PYTHON_TAG)
        if others:
            return (f"ONNX Runtime is installed for {', '.join(others)} only, but QGIS now runs {PYTHON_TAG}: "
                    f"install it again.")
        return "ONNX Runtime, which the SAR LULC algorithms need, is not installed."
    package = Path(spec.origin).parent
    # Compiled modules named for one Python ABI (name.cpython-311-x86_64-linux-gnu.so, name.cp39-win_amd64.pyd).
    tagged = [path.name for path in package.rglob("*") if path.suffix in (".so", ".pyd")
              and (".cpython-" in path.name or ".cp3" in path.name)]
    own_tags = tuple(suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES if suffix.count(".") > 1)
    if tagged and not any(name.endswith(own_tags) for name in tagged):
        return (f"The ONNX Runtime in {package} was built for another Python ({tagged[0]}), not QGIS's "
                f"{PYTHON_TAG}: install it again.")
    return None


def onnxruntime_problem(advice: bool = True) -> str | None:
    """None when onnxruntime imports; otherwise what is wrong and (``advice``) how to install it: the
    dependency dialog itself leaves the advice out, the user is in it."""
    add_dependencies_to_path()
    try:
        importlib.import_module(MODULE)
    except ImportError as error:
        problem = (f"ONNX Runtime is not available to QGIS's Python {sys.version_info.major}."
                   f"{sys.version_info.minor} ({error}).")
        return problem + (f" Install it in QGIS with the menu {INSTALL_MENU}; it goes into {dependencies_dir()}, "
                          f"which qgis_process uses too." if advice else "")
    return None


def torch_problem(work: str = "Training") -> str | None:
    """None when what training needs (PyTorch, onnx, rasterio) can be imported; otherwise the message
    telling the user how to get it (``work``: what needs them, the message's first word)."""
    add_dependencies_to_path()
    missing = [module for module in TRAINING_MODULES if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return (f"{work} needs PyTorch (with {', '.join(TRAINING_MODULES[1:])}; missing: {', '.join(missing)}), which "
            f"QGIS's Python {sys.version_info.major}.{sys.version_info.minor} does not "
            f"have. Install it in QGIS with the menu {INSTALL_MENU}, ticking 'PyTorch, to train models' (CPU build, "
            f"{TORCH_DOWNLOAD}); or from a shell: python3 dependencies.py --profile PROFILE_FOLDER --torch. "
            f"Segment and Water Detect do not need it.")


# What the dialog names as devices: ONNX Runtime's execution providers that run the model here (others it
# lists, such as AzureExecutionProvider, a remote endpoint, are not devices of this machine).
DEVICE_NAMES = {"CUDAExecutionProvider": "NVIDIA GPU (CUDA)", "CPUExecutionProvider": "CPU"}


def device_names(providers) -> list[str]:
    return [DEVICE_NAMES[provider] for provider in providers if provider in DEVICE_NAMES]


def main(argv: list[str]) -> int:
    """Install the runtime dependencies into a QGIS profile with this interpreter, and check they import."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", type=Path, required=True,
                        help="the QGIS profile folder, e.g. ~/.local/share/QGIS/QGIS3/profiles/default")
    parser.add_argument("--gpu", action="store_true", help=f"install {GPU_PACKAGE} (CUDA) instead of onnxruntime")
    parser.add_argument("--torch", action="store_true", help=f"also install PyTorch, for training ({TORCH_DOWNLOAD})")
    args = parser.parse_args(argv)
    target = dependencies_dir(args.profile)
    for label, command in install_steps(target, sys.executable, args.gpu, args.torch):
        print(f"dependencies: {label}: {' '.join(command)}", flush=True)
        if subprocess.call(command, env=pip_environment()) != 0:
            print(f"dependencies: {label} failed; see the output above.", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
