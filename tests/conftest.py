"""Shared fixtures: one tiny synthetic dataset per test session, and what is built from it."""

import pytest


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A `tiny` synthetic dataset root (one mouse, a few hundred neurons), generated once."""
    from stream_decoder.data import simulate

    root = tmp_path_factory.mktemp("tiny")
    simulate("tiny", seed=0, out=root)
    return root


@pytest.fixture(scope="session")
def tiny_mouse(tiny_root):
    from stream_decoder.data import MouseDataset, find_mice

    return MouseDataset(find_mice(tiny_root)[0])
