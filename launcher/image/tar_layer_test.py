"""The deterministic tar writer: same content gives the same bytes, whatever the filesystem says."""

import os
import tarfile
from pathlib import Path

import pytest

from launcher.image import tar_layer


def _make_tree(root: Path, order: list[str], mtime: int) -> None:
    files = {"b/z.txt": b"zz", "a.txt": b"aa", "b/c/d.bin": bytes(range(256))}
    for name in order:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
        os.chmod(path, 0o644)
    (root / "link").symlink_to("a.txt")
    for path in [*root.rglob("*"), root]:
        if path.is_dir():
            os.chmod(path, 0o755)
        if not path.is_symlink():
            os.utime(path, (mtime, mtime))


def test_same_content_gives_identical_bytes_despite_mtimes_and_creation_order(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _make_tree(first, ["a.txt", "b/z.txt", "b/c/d.bin"], mtime=1_700_000_000)
    _make_tree(second, ["b/c/d.bin", "b/z.txt", "a.txt"], mtime=12345)
    one = tar_layer.write_layer(tar_layer.sorted_tree(first, "", keep_owner=False), tmp_path / "1")
    two = tar_layer.write_layer(tar_layer.sorted_tree(second, "", keep_owner=False), tmp_path / "2")
    assert one == two
    assert (tmp_path / "1").read_bytes() == (tmp_path / "2").read_bytes()
    assert one.size == (tmp_path / "1").stat().st_size


def test_a_content_change_changes_the_digest(tmp_path):
    tree = tmp_path / "tree"
    _make_tree(tree, ["a.txt", "b/z.txt", "b/c/d.bin"], mtime=0)
    before = tar_layer.write_layer(
        tar_layer.sorted_tree(tree, "", keep_owner=False), tmp_path / "1"
    )
    (tree / "b" / "z.txt").write_bytes(b"zZ")
    after = tar_layer.write_layer(tar_layer.sorted_tree(tree, "", keep_owner=False), tmp_path / "2")
    assert before.digest != after.digest


def test_members_carry_zero_mtime_numeric_owner_and_parents_come_first(tmp_path):
    tree = tmp_path / "tree"
    _make_tree(tree, ["a.txt", "b/z.txt", "b/c/d.bin"], mtime=1_700_000_000)
    tar_layer.write_layer(tar_layer.sorted_tree(tree, "opt/x", keep_owner=False), tmp_path / "l")
    with tarfile.open(tmp_path / "l") as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    assert names == ["opt/x/a.txt", "opt/x/b", "opt/x/b/c", "opt/x/b/c/d.bin", "opt/x/b/z.txt",
                     "opt/x/link"]  # fmt: skip
    assert all(member.mtime == 0 for member in members)
    assert all(member.uname == "" and member.gname == "" for member in members)
    assert all(member.uid == 0 and member.gid == 0 for member in members)
    assert members[-1].issym() and members[-1].linkname == "a.txt"
    assert not any(member.pax_headers for member in members)  # no atime/ctime records


def test_hard_links_are_stored_once_and_linked_by_their_first_name(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "one").write_bytes(b"x" * 1000)
    os.link(tree / "one", tree / "two")
    tar_layer.write_layer(tar_layer.sorted_tree(tree, "", keep_owner=False), tmp_path / "l")
    with tarfile.open(tmp_path / "l") as tar:
        one, two = tar.getmembers()
    assert one.isreg() and one.size == 1000
    assert two.islnk() and two.linkname == "one"


def test_a_name_written_twice_is_refused(tmp_path):
    entries = [
        tar_layer.Entry("a", "file", 0o644, data=b"1"),
        tar_layer.Entry("a", "file", 0o644, data=b"2"),
    ]
    with pytest.raises(ValueError, match="appears twice"):
        tar_layer.write_layer(entries, tmp_path / "l")


def test_entries_outside_the_image_root_are_rejected():
    for bad in ("/etc/passwd", "../x", "a/../../b", "./a"):
        with pytest.raises(ValueError, match="relative"):
            tar_layer.Entry(bad, "dir", 0o755)
