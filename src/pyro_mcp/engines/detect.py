"""Choose an engine: the strongest one that really boots here, proven by a cached boot probe.

Order for ``auto``: firecracker > qemu-kvm > gvisor > qemu-tcg (ARCHITECTURE.md).
``--engine`` / ``PYRO_ENGINE`` override it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from .. import validation
from ..environments.store import InstalledEnvironment
from ..errors import EngineUnavailable, PyroError, ValidationError
from . import ENGINE_CHOICES
from .base import BootSpec, Engine
from .gvisor import GvisorEngine
from .profile import GVISOR, QEMU_KVM, QEMU_TCG, profile_of

AUTO_ORDER = (QEMU_KVM.key, GVISOR.key, QEMU_TCG.key)

Notify = Callable[[str], None]


class ProbeResult(NamedTuple):
    ok: bool
    reason: str
    seconds: float
    checked_at: float
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
            "checked_at": self.checked_at,
            "cached": self.cached,
        }


def _fingerprint(binary: str | None) -> str:
    parts = [os.uname().release]
    if binary:
        try:
            st = os.stat(binary)
            parts += [binary, str(st.st_size), str(int(st.st_mtime))]
        except OSError:
            parts.append("missing")
    return "|".join(parts)


class EngineSelector:
    def __init__(self, cache: Path, runtime_root: Path) -> None:
        self.cache = cache
        self.runtime_root = runtime_root
        self.probe_file = cache / "engine-probes.json"
        self._engines: dict[str, Engine] = {}

    def engine(self, key: str) -> Engine:
        """The engine for ``key`` (one of AUTO_ORDER), built on first use: a gVisor run never
        imports the QEMU machinery."""
        if key not in self._engines:
            if key == GVISOR.key:
                self._engines[key] = GvisorEngine(self.runtime_root / "runsc")
            elif key in (QEMU_KVM.key, QEMU_TCG.key):
                from .qemu import QemuEngine

                accel = "kvm" if key == QEMU_KVM.key else "tcg"
                self._engines[key] = QemuEngine(accel, self.cache / "vm-templates")
            else:
                raise ValidationError(f"unknown engine {key!r}")
        return self._engines[key]

    @staticmethod
    def _binary(key: str) -> str | None:
        binary = profile_of(key).binary
        return shutil.which(binary) if binary else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / ".engine-probes.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.probe_file.read_text())
            except (OSError, ValueError):
                data = {}
            yield data
            tmp = self.probe_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.probe_file)

    def cached_probe(self, key: str) -> ProbeResult | None:
        try:
            data = json.loads(self.probe_file.read_text())
        except (OSError, ValueError):
            return None
        entry = data.get(key)
        if not isinstance(entry, dict) or entry.get("fingerprint") != _fingerprint(
            self._binary(key)
        ):
            return None
        return ProbeResult(
            bool(entry["ok"]),
            str(entry["reason"]),
            float(entry["seconds"]),
            float(entry["checked_at"]),
            cached=True,
        )

    def probe(
        self,
        key: str,
        env: InstalledEnvironment,
        agent_dir: Callable[[], Path],
        notify: Notify | None = None,
        refresh: bool = False,
    ) -> ProbeResult:
        """Boot a real sandbox with ``key`` and run ``true``; remember the answer.

        ``agent_dir`` stages the guest agent; it is called only when a probe really boots.
        """
        engine = self.engine(key)
        static = engine.unavailable_reason()
        if static:
            return ProbeResult(False, static, 0.0, time.time())
        if not refresh:
            cached = self.cached_probe(key)
            if cached is not None:
                return cached
        if notify:
            notify(f"probing engine {key} with a real boot (once; the answer is cached)")
        started = time.monotonic()
        import tempfile  # probes are rare; a gVisor run never needs these

        workdir = Path(tempfile.mkdtemp(prefix="probe-", dir=self._probe_root()))
        spec = BootSpec(
            sandbox_id=validation.new_id(),
            environment=env,
            workdir=workdir,
            agent_dir=agent_dir(),
            boot_timeout=profile_of(key).probe_timeout,
        )
        try:
            sandbox = engine.boot(spec)
            try:
                result, _ = sandbox.client.call("exec", {"command": "true", "timeout_seconds": 30})
                ok = result.get("exit_code") == 0
                reason = "boots and runs commands" if ok else "boots but cannot run commands"
            finally:
                sandbox.kill()
        except PyroError as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()]
            detail = f" ({lines[1].strip()})" if len(lines) > 1 else ""
            ok, reason = False, (lines[0] + detail)[:400] if lines else type(exc).__name__
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        result_obj = ProbeResult(ok, reason, time.monotonic() - started, time.time())
        with self._locked() as data:
            data[key] = {**result_obj.as_dict(), "fingerprint": _fingerprint(self._binary(key))}
        return result_obj

    def _probe_root(self) -> Path:
        root = self.runtime_root / "probes"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return root

    @staticmethod
    def check_name(requested: str | None) -> str:
        """The engine asked for (argument, else $PYRO_ENGINE, else auto), or a clear error."""
        name = (requested or os.environ.get("PYRO_ENGINE") or "auto").strip().lower()
        if name not in ENGINE_CHOICES:
            # A typo is bad input, never a reason to fall back to the host.
            raise ValidationError(
                f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_CHOICES)}"
            )
        return name

    def select(
        self,
        requested: str | None,
        env: InstalledEnvironment,
        agent_dir: Callable[[], Path],
        notify: Notify | None = None,
    ) -> tuple[str, Engine]:
        """Return (key, engine) for ``requested`` (auto, gvisor, qemu), or raise why not
        (every engine has guest networking, so a networked request chooses alike)."""
        name = self.check_name(requested)
        if name == GVISOR.key:
            order: tuple[str, ...] = (GVISOR.key,)
        elif name == QEMU_KVM.name:
            order = (QEMU_KVM.key, QEMU_TCG.key)
        else:
            order = AUTO_ORDER
        reasons = []
        for key in order:
            engine = self.engine(key)
            if name == GVISOR.key:
                # An explicit request skips the probe: a failure is reported by the boot itself.
                static = engine.unavailable_reason()
                if static:
                    reasons.append(f"{key}: {static}")
                    continue
                return key, engine
            result = self.probe(key, env, agent_dir, notify)
            if result.ok:
                return key, engine
            reasons.append(f"{key}: {result.reason}")
        raise EngineUnavailable(
            f"no usable engine for {name!r} on this host ({'; '.join(reasons)}); "
            "run 'pyro doctor' for what to install"
        )
