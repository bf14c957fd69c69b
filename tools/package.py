"""`make package`: the plugin ZIP that QGIS's "Install from ZIP" accepts.

The ZIP holds one top folder, ``sar_lulc/``, with the plugin's runtime files only (an allow
list: no tests, tools, venv, ext-libs, git, caches, training code or data). QGIS unpacks it
into the profile's plugins folder; the user then installs onnxruntime from the plugin's menu.

    python tools/package.py [--output dist/sar_lulc-VERSION.zip] [--allow-missing-models]
"""

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN_NAME = "sar_lulc"
# What the installed plugin needs, relative to the repository root (folders taken recursively).
TOP_FILES = ("metadata.txt", "__init__.py", "plugin.py", "dependencies.py", "requirements-runtime.txt",
             "README.md", "LICENSE", "model/MODEL_CARD.md", "model/CONTRACT.md")
# sarlulc/: the QGIS-free library, training included (imported by sarlulc:train only, with the optional
# PyTorch extra of the dependency dialog), but not the simulator, which the plugin never imports;
# demo/: the small simulated scene (and its reference map) to try the algorithms on; example_models/: the
# example Processing models the provider lists under "Example models".
FOLDERS = ("processing_provider", "ui", "sarlulc", "demo", "example_models")
LEFT_OUT = ("sarlulc/simulate",)
BUNDLED_MODELS = ("model/weights/lulc.onnx", "model/weights/water.onnx")
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def plugin_version() -> str:
    metadata = configparser.ConfigParser()
    metadata.read(REPO / "metadata.txt", encoding="utf-8")
    return metadata["general"]["version"]


def plugin_files(require_models: bool) -> list[Path]:
    """The repository files that go into the ZIP."""
    missing_models = [name for name in BUNDLED_MODELS if not (REPO / name).is_file()]
    if missing_models and require_models:
        raise SystemExit(f"package: the bundled model(s) {', '.join(missing_models)} are missing; "
                         f"build them first (make train-bundled), or pass --allow-missing-models.")
    files = [REPO / name for name in TOP_FILES if (REPO / name).is_file()]
    files += [REPO / name for name in BUNDLED_MODELS if (REPO / name).is_file()]
    for folder in FOLDERS:
        files += sorted(path for path in (REPO / folder).rglob("*")
                        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in SKIPPED_SUFFIXES
                        and not any(path.relative_to(REPO).as_posix().startswith(left + "/") for left in LEFT_OUT))
    return files


def build_zip(output: Path, require_models: bool = True) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files(require_models):
            archive.write(path, f"{PLUGIN_NAME}/{path.relative_to(REPO).as_posix()}")
    return output


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Build the plugin ZIP for QGIS's Install from ZIP.")
    parser.add_argument("--output", type=Path, default=REPO / "dist" / f"{PLUGIN_NAME}-{plugin_version()}.zip")
    parser.add_argument("--allow-missing-models", action="store_true",
                        help="build without the bundled models (then a MODEL file must be given at run time)")
    args = parser.parse_args(argv)
    output = build_zip(args.output, require_models=not args.allow_missing_models)
    print(f"package: {output} ({output.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
