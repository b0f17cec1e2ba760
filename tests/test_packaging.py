"""Packaging habits: one version (xpgrad.__version__, which pyproject reads), py.typed shipped, the MIT LICENSE."""

import importlib.metadata
import importlib.resources
import pathlib
import tomllib

import xpgrad as xg

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_version_is_defined_once():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "xpgrad.__version__"}
    assert importlib.metadata.version("xpgrad") == xg.__version__  # the installed metadata came from it


def test_py_typed_and_license_ship_with_the_package():
    assert (importlib.resources.files("xpgrad") / "py.typed").is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["xpgrad"]
    assert pyproject["project"]["license"] == "MIT" and pyproject["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_every_subpackage_is_listed_for_the_wheel():
    """A subpackage missing from [tool.setuptools] packages works in the editable install and the
    tests, but not in `pip install .` (the README's first command): xpgrad.capture once was."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {
        "xpgrad." + ".".join(p.parent.relative_to(ROOT / "xpgrad").parts)
        for p in (ROOT / "xpgrad").rglob("__init__.py")
        if p.parent != ROOT / "xpgrad"
    }
    assert found | {"xpgrad", "xpgrad.kernels"} <= listed, sorted(found - listed)
