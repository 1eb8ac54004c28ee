"""Deterministic, uncompressed tar layers: same inputs, same bytes, on any host.

A layer's bytes must depend only on what it contains, so that two clones (or two machines)
building the same commit get the same digest and a registry can skip blobs it already has.
Everything a filesystem adds on its own is fixed here:

- order: depth-first, names sorted bytewise, each directory before its children (what
  `tar --sort=name` does); a hard link points at the first name of its inode in that order;
- times: every mtime is 0, and no atime/ctime is written (no PAX time records);
- owners: numeric uid/gid only, empty user/group names (no /etc/passwd lookups);
- modes: the permission bits given (setuid/setgid kept for the base OS), nothing from umask.

Layers are *uncompressed* (media type `application/vnd.oci.image.layer.v1.tar`): gzip output
depends on the zlib build (Debian 12's zlib 1.2.13 and zlib-ng differ for the same input), so
a gzip digest is only stable on one machine, while the tar digest (the diff_id) is stable
everywhere. The price is bandwidth to remote registries (the base layer's 154 MB tar is
65 MB gzipped); registries on the same machine or network do not notice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

# Unix epoch: the fixed modification time of every entry (SOURCE_DATE_EPOCH=0).
FIXED_MTIME = 0


@dataclasses.dataclass(frozen=True)
class LayerDigest:
    """What identifies a layer blob.

    Attributes:
        digest: "sha256:<hex>" of the tar bytes (equal to the diff_id: no compression).
        size: number of bytes.
    """

    digest: str
    size: int


@dataclasses.dataclass(frozen=True)
class Entry:
    """One member of a layer, already normalized.

    Attributes:
        path: path inside the image, relative, without leading "/" or "./".
        kind: "dir", "file", "symlink" or "hardlink".
        mode: permission bits (e.g. 0o755), including setuid/setgid/sticky.
        uid: numeric owner inside the image.
        gid: numeric group inside the image.
        source: for "file", the host file to copy (or None when `data` is given).
        data: for "file", the content when it is not read from a host file.
        target: for "symlink" the link text; for "hardlink" the path it links to.
    """

    path: str
    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    source: Path | None = None
    data: bytes | None = None
    target: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("dir", "file", "symlink", "hardlink"):
            raise ValueError(
                f"Entry.kind must be one of dir, file, symlink, hardlink; got {self.kind!r}"
            )
        if not self.path or self.path.startswith(("/", "./")) or ".." in self.path.split("/"):
            raise ValueError(f"Entry.path must be relative and inside the image, got {self.path!r}")
        if self.kind == "file" and (self.source is None) == (self.data is None):
            raise ValueError(f"Entry {self.path!r}: a file needs exactly one of source or data")


class HashingWriter:
    """A write-only file wrapper that counts and hashes what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def tell(self) -> int:
        return self.size

    @property
    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()


def _tarinfo(entry: Entry, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = FIXED_MTIME
    info.mode = entry.mode
    info.uid = entry.uid
    info.gid = entry.gid
    info.uname = ""
    info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    elif entry.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = entry.target
    else:
        info.type = tarfile.REGTYPE
        info.size = size
    return info


def write_layer(entries: Iterable[Entry], out_path: Path) -> LayerDigest:
    """Write `entries`, in the order given, as an uncompressed tar; returns its digest.

    The caller provides the order (`sorted_tree` does it for a directory). Names must be
    unique: a repeated name would make the layer's meaning depend on extraction order.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    tmp = out_path.with_name(out_path.name + ".partial")
    with open(tmp, "wb") as raw:
        hashing = HashingWriter(raw)
        # PAX only where ustar cannot hold a field (long names, big ids); no time records.
        with tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in entries:
                if entry.path in seen:
                    raise ValueError(f"layer {out_path.name}: {entry.path!r} appears twice")
                seen.add(entry.path)
                if entry.kind != "file":
                    tar.addfile(_tarinfo(entry, 0))
                elif entry.data is not None:
                    tar.addfile(_tarinfo(entry, len(entry.data)), io.BytesIO(entry.data))
                else:
                    assert entry.source is not None
                    with open(entry.source, "rb") as source:
                        size = os.fstat(source.fileno()).st_size
                        tar.addfile(_tarinfo(entry, size), source)
    os.replace(tmp, out_path)
    return LayerDigest(digest=hashing.digest, size=hashing.size)


def sorted_tree(
    root: Path,
    prefix: str,
    keep_owner: bool = True,
    exclude: frozenset[str] = frozenset(),
) -> Iterator[Entry]:
    """Entries for everything under `root`, placed under `prefix` inside the image.

    Args:
        root: host directory to archive (not itself emitted).
        prefix: image path of `root` ("" for the image root, "opt/terra" for a subtree).
        keep_owner: keep numeric uid/gid (a debootstrap rootfs); False makes everything 0:0.
        exclude: image paths to leave out, with everything below them.

    Device nodes, FIFOs and sockets are skipped: container runtimes provide /dev.
    """
    first_name_of_inode: dict[tuple[int, int], str] = {}

    def walk(directory: Path, image_dir: str) -> Iterator[Entry]:
        names = sorted(os.listdir(directory), key=os.fsencode)
        for name in names:
            host = directory / name
            image_path = f"{image_dir}/{name}" if image_dir else name
            if image_path in exclude:
                continue
            st = os.lstat(host)
            uid, gid = (st.st_uid, st.st_gid) if keep_owner else (0, 0)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                yield Entry(image_path, "dir", mode, uid, gid)
                yield from walk(host, image_path)
            elif stat.S_ISLNK(st.st_mode):
                yield Entry(image_path, "symlink", 0o777, uid, gid, target=os.readlink(host))
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in first_name_of_inode:
                    yield Entry(
                        image_path, "hardlink", mode, uid, gid, target=first_name_of_inode[key]
                    )
                    continue
                if st.st_nlink > 1:
                    first_name_of_inode[key] = image_path
                yield Entry(image_path, "file", mode, uid, gid, source=host)

    yield from walk(Path(root), prefix.strip("/"))


def parent_dirs(prefix: str, mode: int = 0o755) -> list[Entry]:
    """Directory entries for every component of `prefix` ("opt/terra" -> opt, opt/terra)."""
    parts = [part for part in prefix.strip("/").split("/") if part]
    return [Entry("/".join(parts[: i + 1]), "dir", mode) for i in range(len(parts))]
