"""Fixtures for the translation tests (the scenarios live in translate_scenarios.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from translate_scenarios import contract, mesh_providers, share

from meshctl.model import Contract, Provider, Share


@pytest.fixture
def providers() -> dict[str, Provider]:
    return mesh_providers()


@pytest.fixture
def make_contract() -> Callable[..., Contract]:
    return contract


@pytest.fixture
def make_share() -> Callable[..., Share]:
    return share
