"""Shared fixtures: a seeded random generator and a fixed terminal width for Rich."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

# Rich wraps tables to the terminal; tests read the text, so fix the width.
os.environ.setdefault("COLUMNS", "120")
os.environ.setdefault("TERM", "dumb")


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: random, but the same on every run."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
