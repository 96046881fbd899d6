"""The host side of the boundary: which host paths a caller may name, and touching them safely.

The SDK and CLI are a person's own process: they name any host path. Over MCP a model names
host paths only inside the operator's roots (``pyro mcp serve --host-root DIR``): the server
sets :func:`confined` around each tool call and :func:`resolve` then holds every path to them.
A relative path starts at the first root (never the process's working directory), ``..`` and
``~`` are refused, a symlink may not lead out, and errors name paths relative to their root.

Touching a path walks it from its base directory with directory fds and ``O_NOFOLLOW`` (as
the guest agent does, :mod:`pyro_mcp.guest.paths`), so a symlink swapped in on the way is
refused, never followed. Writing (exports) never goes through any symlink, creates missing
parent directories only below its base, and never replaces an existing entry.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from . import validation
from .errors import NotFoundError, ValidationError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: an entry swapped for a FIFO since lstat must not block the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Never a default root: a server started in one of these would hand the model the system.
SYSTEM_DIRS = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
    "/run", "/sbin", "/sys", "/usr", "/var",
)  # fmt: skip
ROOT_FLAG = "--host-root"


def _inside(path: str, root: str) -> bool:
    return root in ("/", path) or path.startswith(root + "/")


def _below(path: str, base: str) -> list[str]:
    return (
        [part for part in path[len(base) :].split("/") if part]
        if base != "/"
        else [part for part in path.split("/") if part]
    )


@dataclass(frozen=True)
class HostRoots:
    """The operator's roots over MCP (real, absolute paths), or why there is none."""

    roots: tuple[str, ...]
    why_none: str = ""

    @classmethod
    def for_server(cls, given: Sequence[str] | None, cwd: str | None = None) -> HostRoots:
        """``--host-root`` values (each an existing directory), else the start directory
        unless it is ``/``, the home directory itself, /tmp or a system directory."""
        if given:
            roots = []
            for value in given:
                path = os.path.realpath(os.path.expanduser(value))
                if not os.path.isdir(path):
                    raise ValidationError(f"{ROOT_FLAG} {value}: not a directory")
                roots.append(path)
            return cls(tuple(dict.fromkeys(roots)))
        start = os.path.realpath(cwd or os.getcwd())
        home = os.path.realpath(os.path.expanduser("~"))
        if start in ("/", home, "/tmp") or any(_inside(start, d) for d in SYSTEM_DIRS):
            return cls((), f"the server started in {start}, which is never a default root")
        return cls((start,))

    def describe(self) -> str:
        if not self.roots:
            return (
                f"Host paths are refused: no host root ({self.why_none}; the operator sets one "
                f"with `pyro mcp serve {ROOT_FLAG} DIR`)."
            )
        others = "".join(f", {root}" for root in self.roots[1:])
        return (
            f"Host paths must be inside the host roots: {self.roots[0]} (relative paths start "
            f"here){others}. '..', '~' and symlinks leading out are refused; exports create "
            "new entries only, never replacing one."
        )

    def show(self, path: str) -> str:
        """How results and errors name a path inside a root: relative to the first root."""
        if self.roots and _inside(path, self.roots[0]):
            return "/".join(_below(path, self.roots[0])) or "."
        return path

    def containing(self, path: str) -> str | None:
        return next((root for root in self.roots if _inside(path, root)), None)

    def resolve(self, raw: str, what: str) -> HostPath:
        if not self.roots:
            raise ValidationError(f"{what} refused: {self.describe()}")
        if raw.startswith("~"):
            raise ValidationError(f"{what} {raw!r} is outside the host roots ('~' is not expanded)")
        if ".." in raw.split("/"):
            raise ValidationError(f"{what} must stay inside the host roots ('..' is not allowed)")
        path = os.path.normpath(os.path.join(self.roots[0], raw))  # exact: no '..' left
        base = self.containing(path)
        if base is None:
            raise ValidationError(
                f"{what} {raw!r} is outside the host roots; relative paths start at the first root"
            )
        return HostPath(path, base, self.show(path), self.roots)


@dataclass(frozen=True)
class HostPath:
    """A host path as the caller may touch it: walks start at ``base``."""

    path: str  # absolute and normalised
    base: str  # its root over MCP; "/" for the SDK and CLI
    shown: str  # how results and errors name it
    roots: tuple[str, ...] = field(default=())  # the roots it is held to (none: not confined)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.shown


_CONFINED: contextvars.ContextVar[HostRoots | None] = contextvars.ContextVar(
    "pyro_host_roots", default=None
)


@contextlib.contextmanager
def confined(roots: HostRoots) -> Iterator[None]:
    """Hold every host path resolved in this context to ``roots`` (an MCP tool call)."""
    token = _CONFINED.set(roots)
    try:
        yield
    finally:
        _CONFINED.reset(token)


def over_mcp() -> bool:
    """Whether the caller is a model (an MCP tool call), not a person's own process."""
    return _CONFINED.get() is not None


def resolve(value: object, what: str) -> HostPath:
    """Check a caller's host path; over MCP hold it to the operator's roots."""
    if isinstance(value, HostPath):
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a host path")
    raw = validation.text(what, value, max_bytes=validation.MAX_HOST_PATH_BYTES)
    roots = _CONFINED.get()
    if roots is not None:
        return roots.resolve(raw, what)
    path = os.path.abspath(os.path.expanduser(raw))
    return HostPath(path, "/", path)


def _step(
    fd: int, part: str, hp: HostPath, what: str, created: list[tuple[int, str]] | None
) -> int:
    """Open the directory ``part`` below ``fd`` without following a symlink (``created``:
    make it when missing and note it there)."""
    try:
        st = os.stat(part, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        if created is None:
            raise NotFoundError(f"{what} {hp.shown} does not exist") from None
        os.mkdir(part, 0o755, dir_fd=fd)
        created.append((fd, part))
        st = os.stat(part, dir_fd=fd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        raise ValidationError(f"{what} {hp.shown}: refusing to go through the symlink {part!r}")
    if not stat.S_ISDIR(st.st_mode):
        raise ValidationError(f"{what} {hp.shown}: {part!r} is not a directory")
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:  # swapped for a symlink meanwhile (ELOOP), or gone
        raise ValidationError(f"{what} {hp.shown}: cannot open {part!r}: {exc.strerror}") from None


def open_source(hp: HostPath, what: str) -> tuple[int, bool, str]:
    """Open a seed or sync source for reading: (fd, is_directory, how to name it).

    Symlinks are resolved once; over MCP the result must stay inside a root. The resolved path
    is then walked without following any symlink, so a swap on the way is refused.
    """
    real = os.path.realpath(hp.path)
    base = hp.base
    if hp.roots:
        found = HostRoots(hp.roots).containing(real)
        if found is None:
            raise ValidationError(f"{what} {hp.shown}: a symlink leads outside the host roots")
        base = found
    shown = HostRoots(hp.roots).show(real) if hp.roots else real
    parts = _below(real, base)
    fds = [os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for part in parts[:-1]:
            fds.append(_step(fds[-1], part, hp, what, None))
        if not parts:
            return os.dup(fds[-1]), True, shown
        try:
            st = os.stat(parts[-1], dir_fd=fds[-1], follow_symlinks=False)
        except FileNotFoundError:
            raise NotFoundError(f"{what} {hp.shown} does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            return _step(fds[-1], parts[-1], hp, what, None), True, shown
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(f"{what} must be a directory or a .tar/.tar.gz/.tgz archive")
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=fds[-1]), False, shown
    except OSError as exc:
        raise ValidationError(f"{what} {hp.shown}: {exc.strerror or exc}") from None
    finally:
        for fd in fds:
            os.close(fd)


class NewEntry:
    """A host entry about to be created: its parent opened safely and the name still free.

    Missing parents are made below the base (never through a symlink); :meth:`close` with
    ``failed`` removes those it made. ``at(name)`` is a path through the parent's fd, for tools
    that want a path (tarfile, mkstemp): it can never be redirected elsewhere.
    """

    def __init__(self, value: object, what: str) -> None:
        self.hp = resolve(value, what)
        self.what = what
        parts = _below(self.hp.path, self.hp.base)
        if not parts:
            raise ValidationError(f"{what} already exists: {self.hp.shown}")
        self.name = parts[-1]
        self.created: list[tuple[int, str]] = []
        self._fds = [os.open(self.hp.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        try:
            for part in parts[:-1]:
                self._fds.append(_step(self._fds[-1], part, self.hp, what, self.created))
            self.check_free()
        except OSError as exc:
            self.close(failed=True)
            raise ValidationError(f"{what} {self.hp.shown}: {exc.strerror or exc}") from None
        except BaseException:
            self.close(failed=True)
            raise

    @property
    def parent_fd(self) -> int:
        return self._fds[-1]

    def at(self, name: str | None = None) -> str:
        return f"/proc/self/fd/{self.parent_fd}/{name or self.name}"

    def check_free(self) -> None:
        try:
            os.stat(self.name, dir_fd=self.parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        raise ValidationError(f"{self.what} already exists: {self.hp.shown}")

    def close(self, *, failed: bool = False) -> None:
        if failed:
            for fd, name in reversed(self.created):
                try:
                    os.rmdir(name, dir_fd=fd)
                except OSError:
                    break
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def __enter__(self) -> NewEntry:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)
