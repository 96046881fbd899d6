"""Shared plumbing: where things live, which engine runs a sandbox, and booting one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from . import validation
from .engines.base import BootSpec, Engine, Sandbox
from .engines.profile import HOST, EngineProfile, profile_of
from .environments.catalog import CATALOG
from .environments.store import EnvironmentStore, InstalledEnvironment
from .errors import EngineUnavailable, ValidationError
from .paths import cache_dir, environment_cache_dir, home_dir, private_dir

if TYPE_CHECKING:
    from .engines.detect import EngineSelector
    from .environments.build import Progress

Notify = Callable[[str], None]

HOST_COMPAT_WARNING = (
    "allow_host_compat: no sandbox engine works here, so commands run directly on the host "
    "with NO isolation"
)


class EngineChoice(NamedTuple):
    key: str  # qemu-kvm, gvisor, qemu-tcg, host
    engine: Engine

    @property
    def profile(self) -> EngineProfile:
        return self.engine.profile

    @property
    def execution_mode(self) -> str:
        return self.profile.execution_mode


class Runtime:
    def __init__(
        self,
        *,
        engine: str | None = None,
        home: str | os.PathLike[str] | None = None,
        cache: str | os.PathLike[str] | None = None,
    ) -> None:
        self.engine_request = engine
        self.home = home_dir(home)
        self.cache = cache_dir(cache)
        self.store = EnvironmentStore(environment_cache_dir(self.cache))
        self._selector: EngineSelector | None = None
        self._agent_dir: Path | None = None

    @property
    def selector(self) -> EngineSelector:
        if self._selector is None:
            from .engines.detect import EngineSelector

            self._selector = EngineSelector(self.cache, self.runtime_root)
        return self._selector

    @property
    def runtime_root(self) -> Path:
        return self.home / "runtime"

    def agent_dir(self) -> Path:
        """The staged guest agent (hashing its sources once per runtime, not per boot)."""
        if self._agent_dir is None or not self._agent_dir.is_dir():
            from .engines.bundle import stage_agent

            self._agent_dir = stage_agent(self.cache)
        return self._agent_dir

    def environment(self, name: str, progress: Progress | None = None) -> InstalledEnvironment:
        """The installed environment, built on first use (its phases reported to the
        surface's call, if any: calls.py)."""
        from .calls import phases

        return self.store.ensure(name, phases(progress))

    def prepare(
        self,
        environment: str,
        allow_host_compat: bool,
        progress: Progress | None,
        notify: Notify | None,
        *,
        need_network: bool,
    ) -> tuple[InstalledEnvironment, EngineChoice]:
        """A new VM's or workspace's environment (built on first use) and engine."""
        allow = validation.boolean("allow_host_compat", allow_host_compat)
        env = self.environment(environment, progress)
        return env, self.choose_engine(env, allow, notify, need_network=need_network)

    def choose_engine(
        self,
        env: InstalledEnvironment,
        allow_host_compat: bool,
        notify: Notify | None = None,
        need_network: bool = False,
    ) -> EngineChoice:
        try:
            key, engine = self.selector.select(self.engine_request, env, self.agent_dir, notify)
        except EngineUnavailable as exc:
            from .hostpaths import over_mcp  # only here: a workspace supervisor never needs it

            if need_network:
                raise EngineUnavailable(
                    f"{exc}. Guest networking needs an isolating engine (gvisor or qemu)"
                ) from exc
            if allow_host_compat:
                if not over_mcp():  # over MCP the operator chose it and every result says so
                    sys.stderr.write(f"[pyro] warning: {HOST_COMPAT_WARNING}\n")
                return EngineChoice(HOST.key, _host_engine())
            if over_mcp():  # a model is never told how to switch isolation off
                raise EngineUnavailable(
                    f"{exc}. The operator can check this host with `pyro doctor`"
                ) from exc
            raise EngineUnavailable(
                f"{exc}. To run unisolated on the host instead, opt in with "
                "--allow-host-compat (allow_host_compat=true)"
            ) from exc
        return EngineChoice(key, engine)

    def engine_by_key(self, key: str) -> EngineChoice:
        """The engine a workspace was created with (it keeps it for its whole life)."""
        if not profile_of(key).isolated:  # raises for an unknown key
            return EngineChoice(key, _host_engine())
        try:
            return EngineChoice(key, self.selector.engine(key))
        except ValidationError:
            raise EngineUnavailable(f"unknown engine {key!r}") from None

    def sandbox_dir(self, kind: str, sandbox_id: str) -> Path:
        private_dir(self.home)
        return private_dir(self.runtime_root / kind / sandbox_id)

    def boot(
        self,
        choice: EngineChoice,
        env: InstalledEnvironment,
        sandbox_id: str,
        workdir: Path,
        *,
        vcpu_count: int,
        mem_mib: int,
        network: bool,
        workspace_dir: Path | None = None,
        workspace_disk: Path | None = None,
        egress_proxy: str | None = None,
        root_dir: Path | None = None,
        system_disk: Path | None = None,
        memory_image: Path | None = None,
    ) -> Sandbox:
        spec = BootSpec(
            memory_image=memory_image,
            root_dir=root_dir,
            system_disk=system_disk,
            workspace_dir=workspace_dir,
            workspace_disk=workspace_disk,
            sandbox_id=sandbox_id,
            environment=env,
            workdir=workdir,
            agent_dir=self.agent_dir(),
            vcpu_count=vcpu_count,
            mem_mib=mem_mib,
            network=network,
            egress_proxy=egress_proxy,
        )
        return choice.engine.boot(spec)

    def prune_caches(self) -> list[str]:
        """Remove boot templates and agent bundles that the current version cannot use."""
        from .engines.bundle import agent_digest

        current_agent = agent_digest()
        rootfs = {
            env.manifest.get("artifacts", {}).get("rootfs.ext4", {}).get("sha256")
            for name in CATALOG
            if (env := self.store.installed(name)) is not None
        }
        deleted: list[str] = []
        for path in sorted((self.cache / "agent").glob("*")):
            if path.name != current_agent:
                shutil.rmtree(path, ignore_errors=True)
                deleted.append(str(path))
        for path in sorted((self.cache / "vm-templates").glob("*")):
            try:
                meta = json.loads((path / "meta.json").read_text())
            except (OSError, ValueError):
                meta = {}
            if meta.get("agent") != current_agent or meta.get("rootfs_sha256") not in rootfs:
                shutil.rmtree(path, ignore_errors=True)
                deleted.append(str(path))
        return deleted

    @staticmethod
    def remove_dir(path: Path) -> None:
        from .guest.tree import remove_tree  # iterative: any depth a sandbox made

        with contextlib.suppress(OSError):
            remove_tree(str(path))


def _host_engine() -> Engine:
    from .engines.host import HostEngine

    return HostEngine()
