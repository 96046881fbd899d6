"""What a workspace's new sandbox is told right after it boots: its network (and the egress
proxy's CA, for brokered secrets) and its secrets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engines.base import Sandbox
from ..engines.profile import guest_network
from . import secrets as secret_store

if TYPE_CHECKING:
    from ..network.proxy import EgressProxy
    from ..runtime import EngineChoice


def configure(
    sandbox: Sandbox,
    record: dict[str, Any],
    choice: EngineChoice,
    proxy: EgressProxy | None,
    secrets_dir: Path,
) -> None:
    if record["network_policy"] != "off":
        args = dict(guest_network(choice.key))
        if proxy is not None and choice.profile.isolated:
            # the proxy's CA, for brokered secrets; never the host's own trust store
            args["trust_ca"] = proxy.authority.pem
        sandbox.client.call("network", args, timeout=30)
    if secrets_dir.is_dir():
        sandbox.client.call(
            "secrets_install", data=secret_store.install_payload(secrets_dir), timeout=30
        )
