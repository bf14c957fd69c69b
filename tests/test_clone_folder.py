"""The test suite runs from a clone in any folder, including one named like the inner package
``sarlulc``: the repository root is itself a package (the QGIS plugin), which pytest once imported
under the folder's name, shadowing the engine package for the tests and for Dask's worker processes."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "runs", "demo_output", ".qgis-settings", "__pycache__",
                                   "*.pdf", "*.zip")


def test_a_clone_in_a_folder_named_sarlulc_collects_and_runs_the_tests(tmp_path):
    pytest.importorskip("distributed")
    clone = tmp_path / "sarlulc"
    shutil.copytree(REPO, clone, ignore=NOT_COPIED)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_tiles.py",
                          "-k", "dask or index"], cwd=clone, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout
