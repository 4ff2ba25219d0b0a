"""A scratch catalog folder for definition tests: the shipped value maps, and room for the files a test writes."""

from __future__ import annotations

import shutil
from importlib.resources import as_file, files
from pathlib import Path

import pytest


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    """``<tmp>/definitions`` (empty) and ``<tmp>/value_maps`` (a copy of the shipped ones)."""
    (tmp_path / "definitions").mkdir()
    with as_file(files("mappings") / "value_maps") as shipped:
        shutil.copytree(shipped, tmp_path / "value_maps")
    return tmp_path
