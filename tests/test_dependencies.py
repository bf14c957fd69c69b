"""Installing the plugin's dependencies: with QGIS's own Python, into the profile, checked by importing.

pip really runs here, offline, on a small wheel built by the test, through the same commands the
dialog and `make deploy` run.
"""

import importlib.machinery
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sar_lulc import dependencies

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(autouse=True)
def fresh_interpreter_search():
    dependencies.qgis_python.cache_clear()
    yield
    dependencies.qgis_python.cache_clear()


def write_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel of package ``name`` whose __version__ is ``version``."""
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    dist_info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"__version__ = {version!r}\n",
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist_info}/RECORD", "".join(f"{path},,\n" for path in [*files, f"{dist_info}/RECORD"]))
    return wheel


def fake_python(folder: Path, version: str, prefix: str) -> Path:
    """An executable that answers like a Python of another version or installation (a pyenv shim, conda)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("python3", f"python{VERSION}"):
        script = folder / name
        script.write_text(f"#!/bin/sh\necho {version}\necho {prefix}\n")
        script.chmod(0o755)
    return folder / "python3"


def test_dependencies_live_in_the_profile_by_python_version_outside_the_plugin(tmp_path):
    folder = dependencies.dependencies_dir(tmp_path / "profiles" / "default")
    assert folder == tmp_path / "profiles" / "default" / "python" / "dependencies" / "sar_lulc" / f"python{VERSION}"
    assert dependencies.PLUGIN_DIR not in folder.parents  # a plugin upgrade replaces the plugin folder, not this


def test_qgis_python_is_the_running_python_not_the_first_python3_on_path(tmp_path, monkeypatch):
    shim = fake_python(tmp_path / "shims", "3.9", "/opt/conda/envs/other")
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sys, "executable", str(shim))  # what QGIS reports when that shim comes first on PATH

    python = dependencies.qgis_python()
    assert python != str(shim)
    identity = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2], sys.prefix)"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert identity == f"{tuple(sys.version_info[:2])} {sys.prefix}"


def test_no_matching_interpreter_is_an_error_naming_what_was_tried(tmp_path, monkeypatch):
    shim = fake_python(tmp_path / "shims", "3.9", "/opt/conda/envs/other")
    monkeypatch.setenv("PATH", str(shim.parent))
    for attribute in ("exec_prefix", "base_exec_prefix"):
        monkeypatch.setattr(sys, attribute, str(tmp_path / "nothing-here"))
    monkeypatch.setattr(sys, "executable", str(shim))
    monkeypatch.setattr(sys, "_base_executable", str(shim), raising=False)

    with pytest.raises(dependencies.DependencyError, match=rf"Could not find the interpreter of QGIS's Python {VERSION}"
                                                           r".*python3 \(Python 3.9 in /opt/conda/envs/other\)"):
        dependencies.qgis_python()


def test_install_steps_install_with_qgis_python_and_prove_the_import(tmp_path):
    target = dependencies.dependencies_dir(tmp_path / "profile")
    python = dependencies.qgis_python()
    wheel = write_wheel(tmp_path, "sarlulc_probe", "1.2")
    pip = dependencies.pip_install_command(target, python, requirements=[str(wheel)])
    check = dependencies.import_check_command(target, python, module="sarlulc_probe")

    assert subprocess.run(pip, env=dependencies.pip_environment(), capture_output=True).returncode == 0
    proof = subprocess.run(check, capture_output=True, text=True)
    assert proof.returncode == 0, proof.stderr
    assert proof.stdout.split()[0] == "1.2" and proof.stdout.split()[1].startswith(str(target))
    try:
        assert dependencies.import_in_qgis(target, "sarlulc_probe").startswith("sarlulc_probe 1.2 works in QGIS's Python")
        # Installed again while loaded: the new files are used after a restart, and the user is told so.
        assert "restart QGIS" in dependencies.import_in_qgis(target, "sarlulc_probe")
    finally:
        sys.modules.pop("sarlulc_probe", None)
        sys.path.remove(str(target))


def test_import_failure_after_pip_is_reported_not_taken_for_success(tmp_path):
    target = tmp_path / "deps"
    (target / "broken_probe").mkdir(parents=True)
    (target / "broken_probe" / "__init__.py").write_text("import a_module_that_is_not_there\n")
    try:
        with pytest.raises(dependencies.DependencyError, match="was installed into .* but does not import in QGIS's Python"):
            dependencies.import_in_qgis(target, "broken_probe")
    finally:
        sys.modules.pop("broken_probe", None)
        sys.path.remove(str(target))


def fake_package(folder: Path, name: str, compiled: str) -> None:
    (folder / name / "capi").mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")
    (folder / name / "capi" / compiled).write_bytes(b"")


def test_start_up_check_finds_missing_and_other_python_installations(tmp_path, monkeypatch):
    profile = tmp_path / "profile"
    folder = dependencies.dependencies_dir(profile)
    assert dependencies.installation_problem(folder, "ort_probe") == (
        "ONNX Runtime, which the SAR LULC algorithms need, is not installed.")

    # Installed by an earlier QGIS on Python 3.9 only (its folder sits beside this Python's).
    fake_package(folder.parent / "python3.9", "ort_probe", "state.cpython-39-x86_64-linux-gnu.so")
    assert dependencies.installation_problem(folder, "ort_probe") == (
        f"ONNX Runtime is installed for python3.9 only, but QGIS now runs python{VERSION}: install it again.")

    # A wheel of another Python in this Python's folder (what pip of a wrong interpreter leaves).
    fake_package(folder, "ort_probe", "state.cpython-39-x86_64-linux-gnu.so")
    monkeypatch.syspath_prepend(str(folder))
    assert "was built for another Python (state.cpython-39-x86_64-linux-gnu.so)" in (
        dependencies.installation_problem(folder, "ort_probe"))

    own_suffix = next(s for s in importlib.machinery.EXTENSION_SUFFIXES if s.count(".") > 1)
    (folder / "ort_probe" / "capi" / f"state{own_suffix}").write_bytes(b"")
    assert dependencies.installation_problem(folder, "ort_probe") is None



def test_the_devices_named_are_those_that_run_the_model_here():
    from sar_lulc.dependencies import device_names

    assert device_names(["AzureExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "NVIDIA GPU (CUDA)", "CPU"]


def test_training_extra_is_optional_cpu_by_default_and_keeps_qgis_numpy(tmp_path, monkeypatch):
    target = tmp_path / "deps"
    plain = dependencies.install_steps(target, "python3")
    with_torch = dependencies.install_steps(target, "python3", torch=True)
    assert len(plain) == 2 and with_torch[:2] == plain
    pip = with_torch[2][1]
    assert pip[pip.index("--index-url") + 1] == dependencies.TORCH_CPU_INDEX and "--no-deps" in pip
    assert {"torch", "onnx", "rasterio"} <= set(pip) and "numpy" not in pip
    assert "--index-url" not in dependencies.install_steps(target, "python3", gpu=True, torch=True)[2][1]
    assert with_torch[3][1][-1].endswith("import torch as m; print(getattr(m, '__version__', '?'), m.__file__)")
    assert dependencies.torch_problem() is None  # this test environment has all three
    monkeypatch.setitem(sys.modules, "rasterio", None)
    problem = dependencies.torch_problem()
    assert "missing: rasterio" in problem and "Install dependencies…" in problem and "200 MB" in problem
