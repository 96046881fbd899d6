"""Adding or rotating one secret of an existing workspace, without a restart.

A brokered secret's new value is used by the egress proxy from the next request on (the
guest keeps the same placeholder); a new secret, or a plain one, is installed in a started
guest at once (and at every later boot, like the others).
"""

from __future__ import annotations

import time
from typing import Any

from ..engines.profile import profile_of
from ..errors import StateError
from . import secrets as secret_store
from .handle import Handle, operation


@operation
def set_secret(ws: Handle, item: dict[str, Any]) -> dict[str, Any]:
    workspace_id = ws.id
    ws.record()  # a workspace that does not exist: said before anything is made for it
    [secret] = secret_store.resolve([{k: v for k, v in item.items() if v is not None}])
    directory = ws.layout.secrets_dir
    with secret_store.locked(directory):  # another set's secret is never lost
        record = ws.record()
        secret_store.check_network([secret], record["network_policy"])
        if not profile_of(record["engine"]).isolated:
            raise StateError("secrets are unavailable for host_compat workspaces")
        known = {s["name"]: s for s in record["secrets"]}
        existed = secret.name in known
        known[secret.name] = secret.public()
        secret_store.store(directory, [secret])
        ws.store.update(workspace_id, secrets=list(known.values()), last_activity_at=time.time())
        installed = record["state"] == "started"
        if installed:  # in order: a later set's install always holds this one's secret
            payload = secret_store.install_payload(directory)
            ws.call("secrets_install", data=payload, timeout=30)
    return {
        "workspace_id": workspace_id,
        "secret": secret.public(),
        "replaced": existed,
        "mode": "brokered" if secret.binding is not None else "plain",
        "installed_in_guest": installed,
    }
