import pytest

from eochange.io.atomic import atomic_path


def test_atomic_file_and_folder_replace(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("one")
    assert target.read_text() == "one"
    folder = tmp_path / "group"
    for content in ("a", "b"):
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            (tmp / "x").write_text(content)
    assert (folder / "x").read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group", "out.txt"]


def test_failure_leaves_old_content_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
