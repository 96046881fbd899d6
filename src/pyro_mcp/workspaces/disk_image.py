"""Read a stopped VM workspace's ext4 disk on the host without mounting it or writing files.

The image is the guest's own: root in the guest can put any bytes in it, so nothing in it is
trusted. ``debugfs`` (user space, catastrophic mode: no bitmaps) only ever prints to a pipe.
Directories are listed with ``ls -p`` and files read with ``cat <inode>``, by inode number,
walking a path one entry at a time: a crafted name (``..``, one holding ``/`` or a newline,
a duplicate) or a symlink can never steer a read, let alone a write, on the host (an earlier
``rdump`` of the whole image could be made to write anywhere, and to fill the disk). Output
is bounded, a line that does not parse is an error, and debugfs runs with a time limit and
``RLIMIT_FSIZE`` at 0. The image root is /workspace (its ``lost+found`` is left out).
"""

from __future__ import annotations

import os
import re
import resource
import selectors
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StateError, ValidationError

ROOT_INODE = 2
LS_LINE = re.compile(r"/(\d+)/([0-7]{6})/\d+/\d+/(.*)/(\d*)/")
FAST_LINK = re.compile(r'Fast link dest: "(.*)"')
MAX_LISTING_BYTES = 64 * 1024 * 1024
TIMEOUT_SECONDS = 120.0
MAX_LIST_ENTRIES = 20000  # as the live file list


@dataclass(frozen=True)
class Entry:
    name: str
    inode: int
    mode: int
    size: int

    @property
    def kind(self) -> str:
        if stat.S_ISLNK(self.mode):
            return "symlink"
        if stat.S_ISDIR(self.mode):
            return "directory"
        if stat.S_ISREG(self.mode):
            return "file"
        return "special"


ROOT = Entry("", ROOT_INODE, stat.S_IFDIR | 0o755, 0)


def _no_files() -> None:  # in the child: debugfs may write to its pipes only
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


class DiskImage:
    def __init__(self, image: Path) -> None:
        self.image = image

    def _debugfs(self, request: str, limit: int) -> bytes:
        """stdout of one debugfs request, cut at ``limit`` bytes (the rest is not read)."""
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + TIMEOUT_SECONDS
        with (
            subprocess.Popen(
                ["debugfs", "-c", "-R", request, str(self.image)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_no_files,  # noqa: PLW1509 - setrlimit only, no locks taken
            ) as proc,
            selectors.DefaultSelector() as sel,
        ):
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, (out, limit))
            sel.register(proc.stderr, selectors.EVENT_READ, (err, 4096))
            while sel.get_map() and len(out) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    proc.kill()
                    raise StateError("reading the workspace disk took too long")
                for key, _ in sel.select(timeout=left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buffer, cap = key.data
                    buffer += chunk[: max(0, cap - len(buffer))]  # the rest is dropped
            early = len(out) >= limit
            if early:
                proc.kill()  # enough was read: nothing more is wanted
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        if code < 0 and not early:  # e.g. SIGXFSZ: it tried to write a file
            raise StateError(f"cannot read the workspace disk: debugfs ended by signal {-code}")
        for line in err.decode("utf-8", "replace").splitlines():
            if line and not line.startswith("debugfs "):  # the version banner
                raise StateError(f"cannot read the workspace disk: {line[:300]}")
        return bytes(out[:limit])

    def listdir(self, directory: Entry) -> list[Entry]:
        raw = self._debugfs(f"ls -p <{directory.inode}>", MAX_LISTING_BYTES + 1)
        if len(raw) > MAX_LISTING_BYTES:
            raise StateError("a directory on the workspace disk is too large to list")
        entries = []
        for line in raw.decode("utf-8", "surrogateescape").splitlines():
            if not line:
                continue
            match = LS_LINE.fullmatch(line)
            if match is None:
                raise StateError("the workspace disk holds a malformed directory entry")
            inode, mode, name, size = match.groups()
            if name in (".", "..") or "/" in name:
                continue  # never a name a path can go through
            entries.append(Entry(name, int(inode), int(mode, 8), int(size or 0)))
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise StateError("the workspace disk holds a directory with duplicate names")
        return sorted(entries, key=lambda e: e.name)

    def lookup(self, parts: list[str]) -> Entry:
        """The entry at /workspace/<parts>; no symlink is ever gone through."""
        entry = ROOT
        for index, part in enumerate(parts):
            if entry.kind == "symlink":
                raise ValidationError(
                    f"refusing to go through a symlinked directory: {parts[index - 1]!r}"
                )
            if entry.kind != "directory":
                raise ValidationError(f"not a directory: {parts[index - 1]!r}")
            found = [e for e in self.listdir(entry) if e.name == part]
            if not found or (entry is ROOT and part == "lost+found"):
                raise ValidationError(
                    f"workspace path does not exist: /workspace/{'/'.join(parts)}"
                )
            entry = found[0]
        return entry

    def read(self, entry: Entry, max_bytes: int) -> bytes:
        return self._debugfs(f"cat <{entry.inode}>", max_bytes)

    def link_target(self, entry: Entry) -> str:
        shown = self._debugfs(f"stat <{entry.inode}>", 64 * 1024).decode("utf-8", "replace")
        fast = FAST_LINK.search(shown)
        if fast is not None:
            return fast.group(1)
        return self.read(entry, 4096).decode("utf-8", "replace")

    def entries(self, guest_path: str, parts: list[str], recursive: bool) -> list[dict[str, Any]]:
        """The live file list's entries for /workspace/<parts>, read from the image."""
        top = self.lookup(parts)
        if top.kind == "special":
            raise ValidationError(f"{guest_path} is a special file, not a file")
        pending = [(guest_path, top)] if top.kind == "directory" else []
        found = [] if pending else [(guest_path, top)]
        seen: set[int] = set()  # a crafted image may link a directory into itself
        while pending and len(found) < MAX_LIST_ENTRIES:
            where, directory = pending.pop()
            if directory.inode in seen:
                continue
            seen.add(directory.inode)
            for child in self.listdir(directory):
                if directory.inode == ROOT_INODE and child.name == "lost+found":
                    continue
                if child.kind == "special" or len(found) >= MAX_LIST_ENTRIES:
                    continue
                child_path = f"{where.rstrip('/')}/{child.name}"
                found.append((child_path, child))
                if recursive and child.kind == "directory":
                    pending.append((child_path, child))
        return [
            {
                "path": where,
                "artifact_type": entry.kind,
                "size_bytes": entry.size if entry.kind == "file" else 0,
                "link_target": self.link_target(entry) if entry.kind == "symlink" else None,
            }
            for where, entry in sorted(found, key=lambda item: item[0])
        ]
