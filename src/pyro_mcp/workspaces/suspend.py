"""`workspace stop --suspend` (QEMU): the VM's memory kept across stop/start.

The stop pauses the VM and saves its whole state (RAM and devices, over QMP as a boot
template's save) to ``memory.state`` in the workspace's private directory; its disks stay as
they are, QEMU ends. The next start resumes QEMU from that file on the same disks: processes,
services and shells are all still there (the services are not started again, their ports
are published again). The file is removed by that start, whatever happens, and by a reset
(a fresh system) or a delete (the whole directory). A resume that fails (a corrupt file, an
upgraded QEMU) is followed by an ordinary boot that restarts the services from their
records, and ``last_error`` says so. An idle stop is always a plain stop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engines.base import Sandbox
from ..engines.profile import profile_of
from ..engines.templates import partial_path
from ..errors import PyroError, ValidationError
from .layout import WorkspaceLayout
from .ports import PortTable, validate_ports
from .service_records import ServiceRecords

if TYPE_CHECKING:
    from .supervisor import Supervisor

NOT_HERE = (
    "stop --suspend keeps memory only on the qemu engine; a plain stop keeps the disk "
    "and services restart on start"
)
# The longest a suspending supervisor is waited for: the save's own limit, with room.
STOP_WAIT_SECONDS = 150.0


def check(record: dict[str, Any]) -> None:
    """A suspend on an engine that cannot keep memory is refused in one line."""
    if not profile_of(record["engine"]).real_vm:
        raise ValidationError(NOT_HERE)


def suspended(layout: WorkspaceLayout) -> bool:
    return layout.memory_image.is_file()


def save(supervisor: Supervisor, sandbox: Sandbox) -> None:
    """Suspend ``sandbox`` into the workspace's memory image and record the workspace
    stopped: once the image is whole, or with why it could not be made (the caller then
    stops the sandbox plainly; no partial image is left)."""
    layout = supervisor.layout
    error = None
    try:
        sandbox.suspend(layout.memory_image)
    except (PyroError, OSError) as exc:
        forget(layout)
        error = f"stop --suspend could not save the memory ({exc}); stopped without it"
    supervisor.store.update(
        supervisor.workspace_id, state="stopped", supervisor_pid=None, last_error=error
    )


def forget(layout: WorkspaceLayout) -> None:
    for path in (layout.memory_image, partial_path(layout.memory_image)):
        path.unlink(missing_ok=True)


def boot(supervisor: Supervisor) -> list[str]:
    """A supervisor's first sandbox: resumed from the memory image if there is one (its
    services run on), else (or if that fails) booted with its services started again from
    their records. What went wrong, for ``last_error``."""
    layout = supervisor.layout
    errors: list[str] = []
    if suspended(layout):
        supervisor.resume_from = layout.memory_image
        try:
            supervisor._boot_sandbox()
        except Exception as exc:  # whatever it was: a normal boot, never a stuck start
            errors.append(
                f"resuming the suspended memory failed ({exc}); booted afresh, services "
                "restarted from their records"
            )
        finally:
            supervisor.resume_from = None
            forget(layout)
        if supervisor.sandbox is not None:
            return republish(supervisor.services, supervisor.ports)
    forget(layout)  # what a save killed part-way left (memory.state.partial)
    supervisor._boot_sandbox()
    sandbox = supervisor.sandbox
    assert sandbox is not None
    start = supervisor._call
    return errors + supervisor.services.restart(lambda a: start(sandbox, "service_start", a)[0])


def republish(services: ServiceRecords, ports: PortTable) -> list[str]:
    """A resumed VM's services run on; their published ports were the old QEMU's."""
    errors: list[str] = []
    for name, request in services.load().items():
        try:
            wanted = validate_ports(request.get("published_ports"))
            if wanted:
                ports.publish(name, wanted)
        except Exception as exc:  # whatever it was: a normal boot, never a stuck start
            errors.append(f"service {name!r}: its ports could not be published again: {exc}")
    return errors
