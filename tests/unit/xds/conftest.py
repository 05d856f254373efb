"""Loads the xDS test helpers under unique module names.

Helper files in test folders without ``__init__.py`` would otherwise be imported as bare top-level
modules (``_resources``), where another folder's helper of the same name could shadow them; and
importing them by file path works under every pytest import mode.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest


def _load(alias: str, filename: str) -> ModuleType:
    if alias in sys.modules:
        return sys.modules[alias]
    spec = importlib.util.spec_from_file_location(alias, Path(__file__).with_name(filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


_load("xds_test_resources", "_resources.py")
harness = _load("xds_test_harness", "_harness.py")


@pytest.fixture
async def xds() -> AsyncIterator[object]:
    """The real XdsServer on a free loopback port, with a recording callbacks object."""
    async with harness.running_server() as h:
        yield h
