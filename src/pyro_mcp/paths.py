"""Where pyro-mcp keeps state and caches. Never world-writable /tmp (PRODUCT_SPEC §7.4)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def home_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """State: workspace records and disks. ``PYRO_HOME`` or ~/.local/share/pyro-mcp."""
    if override is not None:
        return Path(override).expanduser()
    env = _env_path("PYRO_HOME")
    if env is not None:
        return env
    data = _env_path("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return data / "pyro-mcp"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Caches: built environments, agent bundles, engine probes. ``PYRO_CACHE_DIR``."""
    if override is not None:
        return Path(override).expanduser()
    env = _env_path("PYRO_CACHE_DIR")
    if env is not None:
        return env
    cache = _env_path("XDG_CACHE_HOME") or Path.home() / ".cache"
    return cache / "pyro-mcp"


def environment_cache_dir(cache: Path) -> Path:
    """``PYRO_ENVIRONMENT_CACHE_DIR`` or <cache>/environments."""
    return _env_path("PYRO_ENVIRONMENT_CACHE_DIR") or cache / "environments"


def private_dir(path: Path) -> Path:
    """Create a directory only its owner can enter."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """A Unix socket address for ``path``, also when it is longer than sun_path allows
    (through /proc/self/fd of its directory)."""
    if len(str(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
