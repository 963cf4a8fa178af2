"""lightning_ser.atomic: whole files or none, no temporary files left by failures, paths in errors."""
import errno

import pytest

from lightning_ser.atomic import naming, sweep_tmp, write_atomic


def test_a_failed_write_keeps_the_old_file_removes_its_tmp_and_names_the_path(tmp_path):
    target = tmp_path / "audio.int16"
    write_atomic(target, b"old")

    def disk_full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name

    with pytest.raises(OSError) as info:
        write_atomic(target, disk_full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.int16"]


def test_naming_keeps_the_errno_subclass_and_an_existing_file_name(tmp_path):
    with pytest.raises(PermissionError) as info, naming(tmp_path / "x"):
        raise OSError(errno.EACCES, "Permission denied")
    assert info.value.filename == str(tmp_path / "x")
    with pytest.raises(FileNotFoundError) as info, naming(tmp_path / "x"):
        open(tmp_path / "missing")
    assert info.value.filename == str(tmp_path / "missing")


def test_sweep_removes_only_temporary_files(tmp_path):
    (tmp_path / ".a.int16.123.tmp").write_bytes(b"x")
    (tmp_path / "a.int16").write_bytes(b"y")
    (tmp_path / "b.tmp").write_bytes(b"z")  # not a temporary name of ours
    assert [p.name for p in sweep_tmp(tmp_path)] == [".a.int16.123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.int16", "b.tmp"]
    assert sweep_tmp(tmp_path / "absent") == []
