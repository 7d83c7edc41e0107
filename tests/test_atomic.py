"""Atomic writes: a reader sees the old file or the new one, and a failed write leaves the old one."""

import pytest

from stream_decoder.atomic import write_atomic, write_atomic_with


def test_a_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "sub" / "meta.json"
    write_atomic(path, "first")
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["meta.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "weights.pt"
    write_atomic(path, b"old")

    def half_then_fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic_with(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pt"]
