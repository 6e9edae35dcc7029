"""What a regular install ships: every package of the source tree (pyproject lists them by hand)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_in_the_install() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^\[tool\.setuptools\]$.*?^packages = \[(.*?)^\]", text, re.M | re.S)
    assert block is not None, "no [tool.setuptools] packages list in pyproject.toml"
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "dev_sessions").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert "dev_sessions.mcp" in listed and "dev_sessions.skills" in listed
    assert found - listed == set(), "packages missing from pyproject's [tool.setuptools] packages"
