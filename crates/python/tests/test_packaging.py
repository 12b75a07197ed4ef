"""The installed package: typed, abi3, built with the maturin the workspace declares."""

from __future__ import annotations

import re
from importlib import metadata, resources
from pathlib import Path

import backstop_admission

CRATE = Path(__file__).resolve().parents[1]
ROOT = CRATE.parents[1]


def test_the_package_ships_py_typed_and_stubs_for_the_native_module() -> None:
    files = resources.files(backstop_admission)
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_native.pyi").is_file()
    native = [f.name for f in files.iterdir() if f.name.startswith("_native.")]
    assert any(name.endswith(".abi3.so") for name in native), native


def test_the_distribution_is_backstop_admission_for_python_3_9_and_later() -> None:
    meta = metadata.metadata("backstop-admission")
    assert meta["Name"] == "backstop-admission"
    assert meta["Requires-Python"] == ">=3.9"
    wheel = metadata.distribution("backstop-admission").read_text("WHEEL") or ""
    assert "Tag: cp39-abi3-" in wheel


def test_pyproject_requires_the_maturin_the_workspace_declares() -> None:
    cargo = (ROOT / "Cargo.toml").read_text()
    declared = re.search(r'^maturin = "([0-9.]+)"$', cargo, re.M)
    assert declared, "the root Cargo.toml declares maturin's version"
    pyproject = (CRATE / "pyproject.toml").read_text()
    assert f'requires = ["maturin>={declared.group(1)},<2"]' in pyproject
    assert re.search(r'^pyo3 = \{ version = "[0-9.]+", features = \["abi3-py39"\] \}$', cargo, re.M)
