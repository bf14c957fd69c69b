"""The plugin's Python stays loadable on QGIS 4 (PyQt6) as well as on QGIS 3.22 (PyQt5).

Two checks over every Python file the plugin ZIP ships (tools/package.py's list): flake8-qgis's QGS rules,
and our own for what it does not cover: no ``exec_()``, no unscoped enum values of the common Qt classes
and QGIS classes (PyQt6 has only ``Qt.AlignmentFlag.AlignLeft``, not ``Qt.AlignLeft``), no ``QVariant`` field types outside
the one shim (processing_provider/compat.py), no imports from PyQt5/PyQt6 directly (only ``qgis.PyQt``).
"""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import qgis.core
import qgis.gui
from qgis.PyQt import QtCore, QtGui, QtWidgets

REPO = Path(__file__).resolve().parent.parent
# The one module allowed QVariant field types: its QGIS 3.22-3.36 branch (QgsField takes QVariant.Type there).
FIELD_TYPE_SHIM = REPO / "processing_provider" / "compat.py"
QT_CLASSES = {name: getattr(module, name) for module, names in (
    (QtCore, ("Qt", "QProcess")),
    (QtGui, ("QTextCursor",)),
    (QtWidgets, ("QDialogButtonBox", "QMessageBox", "QSizePolicy", "QHeaderView", "QAbstractItemView")),
) for name in names}


def enum_owner(name: str):
    """The Qt or QGIS class called ``name`` whose enum values the check looks at, or None."""
    if name in QT_CLASSES:
        return QT_CLASSES[name]
    if name.startswith("Qgs") or name == "Qgis":
        return getattr(qgis.core, name, None) or getattr(qgis.gui, name, None)
    return None


def shipped_python_files() -> list[Path]:
    spec = importlib.util.spec_from_file_location("package_tool", REPO / "tools" / "package.py")
    package_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package_tool)
    return [path for path in package_tool.plugin_files(require_models=False) if path.suffix == ".py"]


def qt6_problems(path: Path) -> list[str]:
    """``file:line: what`` for each construct that breaks under PyQt6 in one file."""
    problems = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "exec_":
            problems.append(f"{where}:{node.lineno}: exec_() (PyQt6 has exec() only)")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr[:1].isupper():
            owner = node.value.id
            owner_class = enum_owner(owner)
            member = getattr(owner_class, node.attr, None)
            # An enum type or nested class (Qt.AlignmentFlag), a value of an enum named directly
            # (QgsMapLayerType.VectorLayer) and constants (QgsProcessing.TEMPORARY_OUTPUT) are fine;
            # an enum value straight on a class is not.
            if member is not None and not isinstance(member, (type, str, owner_class)) and not callable(member):
                problems.append(f"{where}:{node.lineno}: {owner}.{node.attr} is unscoped (write "
                                f"{owner}.{type(member).__name__}.{node.attr}, or compat.py's name where "
                                f"later QGIS moved the enum to Qgis.*)")
            if owner == "QVariant" and path != FIELD_TYPE_SHIM:
                problems.append(f"{where}:{node.lineno}: QVariant.{node.attr} (use the FIELD_* types of compat.py)")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("PyQt5", "PyQt6"):
            problems.append(f"{where}:{node.lineno}: from {node.module} import (use qgis.PyQt)")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("PyQt5", "PyQt6"):
                    problems.append(f"{where}:{node.lineno}: import {alias.name} (use qgis.PyQt)")
    return problems


def flake8_qgis(paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flake8", "--config", str(REPO / ".flake8"), "--select", "QGS",
                           *map(str, paths)], cwd=REPO, capture_output=True, text=True)


def test_the_shipped_files_include_the_plugins_entry_points():
    names = {path.relative_to(REPO).as_posix() for path in shipped_python_files()}
    assert {"__init__.py", "plugin.py", "dependencies.py", "ui/dependency_dialog.py",
            "processing_provider/provider.py", "processing_provider/compat.py"} <= names


def test_no_pyqt6_breaking_constructs_in_the_plugin():
    problems = [problem for path in shipped_python_files() for problem in qt6_problems(path)]
    assert not problems, "\n".join(problems)


def test_own_check_finds_each_kind_of_problem(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from PyQt5.QtCore import Qt\nimport PyQt6.QtGui\n"
                   "dialog.exec_()\nalign = Qt.AlignLeft\nok = Qt.AlignmentFlag.AlignLeft\n"
                   "buttons = QDialogButtonBox(QDialogButtonBox.Close)\nfield = QgsField('n', QVariant.Int)\n"
                   "sink = QgsWkbTypes.Polygon\nout = QgsProcessing.TEMPORARY_OUTPUT\n",
                   encoding="utf-8")
    found = "\n".join(qt6_problems(bad))
    for expected in ("from PyQt5.QtCore", "import PyQt6.QtGui", "exec_()", "Qt.AlignLeft is unscoped",
                     "QDialogButtonBox.Close is unscoped", "QVariant.Int", "QgsWkbTypes.Polygon is unscoped"):
        assert expected in found
    assert "AlignmentFlag.AlignLeft is" not in found and "TEMPORARY_OUTPUT" not in found
    assert len(found.splitlines()) == 7


def test_flake8_qgis_finds_nothing_in_the_plugin():
    result = flake8_qgis(shipped_python_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_flake8_qgis_runs_its_rules(tmp_path):
    """The lint above bites: a file with a direct PyQt import and exec_() is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from PyQt5.QtWidgets import QDialog\n\nQDialog().exec_()\n", encoding="utf-8")
    result = flake8_qgis([bad])
    assert result.returncode != 0
    assert "QGS103" in result.stdout and "QGS107" in result.stdout


@pytest.mark.parametrize("name, type_name", [("FIELD_INT", "int"), ("FIELD_INT64", "qlonglong"),
                                             ("FIELD_DOUBLE", "double"), ("FIELD_STRING", "QString")])
def test_compat_field_types_make_fields_of_that_type(name, type_name):
    """The shim hands QgsField a type the running QGIS accepts, and the field gets that type."""
    from qgis.core import QgsField

    from processing_provider import compat

    field = QgsField("value", getattr(compat, name))
    assert QtCore.QMetaType.typeName(field.type()) == type_name
