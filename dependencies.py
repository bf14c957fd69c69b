"""The plugin's runtime Python dependencies: where they live and how they get there.

QGIS runs plugins in its own Python (the system one on Linux), not in a project venv, so
the plugin keeps onnxruntime in a plugin-local folder, ``ext-libs/``, filled by pip
(``make deploy`` or the "SAR LULC > Install dependencies" dialog) and put on ``sys.path``
when the plugin loads. pip runs with ``--no-deps``: numpy must stay QGIS's own (a second
numpy ahead of it would break the GDAL and QGIS bindings), and onnxruntime's other declared
dependencies (protobuf, flatbuffers, packaging) are not imported for inference.

Also a script, so that ``make deploy`` runs the very same pip command:
``python3 dependencies.py [--gpu]``.
"""

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
EXT_LIBS = PLUGIN_DIR / "ext-libs"
REQUIREMENTS = PLUGIN_DIR / "requirements-runtime.txt"
GPU_PACKAGE = "onnxruntime-gpu"


def add_ext_libs_to_path() -> None:
    """Put ext-libs/ first on sys.path so the plugin's onnxruntime wins over any other copy."""
    if EXT_LIBS.is_dir() and str(EXT_LIBS) not in sys.path:
        sys.path.insert(0, str(EXT_LIBS))
        importlib.invalidate_caches()


def runtime_requirements(gpu: bool = False) -> list[str]:
    """The requirement lines of requirements-runtime.txt; ``gpu`` swaps in onnxruntime-gpu."""
    requirements = []
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        if gpu and requirement.startswith("onnxruntime") and not requirement.startswith(GPU_PACKAGE):
            requirement = GPU_PACKAGE + requirement[len("onnxruntime"):]
        requirements.append(requirement)
    return requirements


def qgis_python() -> str:
    """The interpreter matching the running Python (inside QGIS, sys.executable is QGIS itself)."""
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix = Path(sys.exec_prefix)
    for candidate in (prefix / "bin" / f"python{version}", prefix / "bin" / "python3",
                      prefix / "python.exe", prefix / "python3.exe"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(f"python{version}") or shutil.which("python3")
    if found is None:
        raise FileNotFoundError(
            f"Could not find the Python {version} interpreter QGIS uses; install the dependencies "
            f"from a shell with: python{version} -m pip install --no-deps --target '{EXT_LIBS}' onnxruntime")
    return found


def pip_install_command(gpu: bool = False, python: str | None = None) -> list[str]:
    """The pip command that fills ext-libs/ (the dialog and `make deploy` both run it)."""
    return [python or qgis_python(), "-m", "pip", "install", "--upgrade", "--no-deps",
            "--target", str(EXT_LIBS), *runtime_requirements(gpu)]


def onnxruntime_problem() -> str | None:
    """None when onnxruntime imports; otherwise the message telling the user how to install it."""
    add_ext_libs_to_path()
    try:
        importlib.import_module("onnxruntime")
    except ImportError as error:
        return (f"ONNX Runtime is not available to QGIS's Python ({error}). Install it with the "
                f"menu SAR LULC > Install dependencies, or run `make deploy` in the plugin folder; "
                f"it goes into {EXT_LIBS}.")
    return None


def main(argv: list[str]) -> int:
    """Install the runtime dependencies into ext-libs/ with this interpreter's pip."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--gpu", action="store_true", help=f"install {GPU_PACKAGE} (CUDA) instead of onnxruntime")
    args = parser.parse_args(argv)
    command = pip_install_command(args.gpu, python=sys.executable)
    print(" ".join(command), flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
