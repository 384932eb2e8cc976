"""The one atomic writer: old files survive failures, errors name the path."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from vizapp.core.errors import StorageError, UserError
from vizapp.core.files import (
    atomic_write,
    remove_leftovers,
    storage_error,
    write_json,
    write_npz,
    write_text,
)


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    write_text(target, "good")

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match=r"a\.json: cannot write \(the disk is full"):
        atomic_write(target, fail)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_storage_error_is_a_user_error_naming_the_path():
    err = storage_error(OSError(errno.EROFS, "Read-only file system"), "/x/y.npz")
    assert isinstance(err, UserError)
    assert str(err) == "/x/y.npz: cannot write (the file system is read-only; choose a writable folder)"


def test_write_npz_writes_exactly_the_path_asked(tmp_path):
    out = write_npz(tmp_path / "name_without_extension", a=np.arange(3))
    assert out == tmp_path / "name_without_extension"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["name_without_extension"]
    with np.load(out) as z:
        assert z["a"].tolist() == [0, 1, 2]


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(StorageError, match="is a folder"):
        write_npz(tmp_path, a=np.zeros(1))


def test_unserialisable_json_raises_before_touching_the_file(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})
    assert target.read_text() == '{"ok": 1}\n'


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write a read-only folder")
def test_a_read_only_folder_is_one_line(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="permission denied"):
            write_text(tmp_path / "x.txt", "x")
    finally:
        tmp_path.chmod(0o700)


def test_leftovers_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = tmp_path / ".model.safetensors.999999999.abcd1234.tmp"  # no such pid
    mine = tmp_path / f".model.safetensors.{os.getpid()}.abcd1234.tmp"
    other = tmp_path / ".notes.txt"
    for p in (dead, mine, other):
        p.write_text("x")
    assert remove_leftovers(tmp_path) == 1
    assert not dead.exists() and mine.exists() and other.exists()
