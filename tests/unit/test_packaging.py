"""What a regular install ships: every package of the source tree (pyproject lists them by hand)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_in_the_install() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "dev_sessions").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found - listed == set(), "packages missing from pyproject's [tool.setuptools] packages"
