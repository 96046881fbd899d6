"""Stage the guest agent package once per content hash, for engines to put in the sandbox."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import py_compile
import shutil
import sys
import tempfile
from pathlib import Path

GUEST_SOURCE = Path(__file__).resolve().parent.parent / "guest"


def agent_files() -> list[Path]:
    return sorted(p for p in GUEST_SOURCE.glob("*.py") if p.is_file())


def agent_digest() -> str:
    digest = hashlib.sha256(f"bundle-2 {sys.version_info[:2]}".encode())
    for path in agent_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_agent(cache: Path) -> Path:
    """Return a directory containing ``pyro_guest/`` (read-only files, shared by sandboxes)."""
    digest = agent_digest()
    target = cache / "agent" / digest
    if (target / "pyro_guest" / "agent.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    package = tmp / "pyro_guest"
    package.mkdir()
    for path in agent_files():
        shutil.copy2(path, package / path.name)
        os.chmod(package / path.name, 0o444)
        # Bytecode that never checks the source (the guest runs with -B from a read-only
        # place, and cpio drops mtimes): saves compiling the agent at every boot. A guest
        # whose Python differs from ours ignores it (the file name carries the version).
        py_compile.compile(
            str(package / path.name),
            cfile=importlib.util.cache_from_source(str(package / path.name)),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    os.chmod(tmp, 0o755)  # noqa: S103 - sandboxes of any user read the agent
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process staged it first
    return target
