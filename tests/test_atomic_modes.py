"""Files and directories written atomically (through a private temporary) end with the modes any file the user
writes gets: readable by others where the umask says so (a report or a merged checkpoint on a shared machine)."""
from __future__ import annotations

import os
import stat

from lines.atomic import UMASK, temporary_directory_beside, write_json, write_text


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_is_read_without_changing_it():
    before = os.umask(0o022)
    os.umask(before)
    assert UMASK == before


def test_an_atomic_file_has_the_mode_open_would_give(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert mode(write_text(tmp_path / "report.md", "# report\n")) == mode(plain) == 0o666 & ~UMASK
    assert mode(write_json(tmp_path / "points.json", {"a": 1})) == mode(plain)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_a_directory_made_beside_its_target_has_the_mode_mkdir_would_give(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    made = temporary_directory_beside(tmp_path / "merged")
    assert mode(made) == mode(plain) == 0o777 & ~UMASK
