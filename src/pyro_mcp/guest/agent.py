"""The guest agent: one framed, multiplexed request stream; requests run concurrently on
reused worker threads.

Run inside the sandbox as ``python3 -m pyro_guest.agent [--init] [--channel stdio|virtio]``.
With ``--init`` it is the sandbox's PID 1: a small parent reaps orphans and the agent runs
as its child (and, in a VM, the machine powers off when the agent ends).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from . import boot, freeze, netenv, paths, secrets
from .chunks import Chunks, Uploads, serve
from .execution import NEXT_SHELL, cancel, prepare_next, run_command
from .protocol import PROTOCOL_VERSION, FrameTooLarge, ProtocolError, encode, read_frame
from .workers import Workers

# The guest imports nothing it does not need (every import costs time in a sandbox).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

    Emit = Callable[[str, bytes], None]
    Result = dict[str, Any] | tuple[dict[str, Any], bytes]
    Handler = Callable[[dict[str, Any], bytes, Emit], Result]


AGENT_VERSION = "3.6.0"

# Set while the VM is saved as a boot template: the host that saved it hangs up, and a
# restored copy must then wait for its new host instead of powering off.
STANDBY = threading.Event()
SETUP: list[threading.Thread] = []  # set-up beside hello answers (limits), joined before a
# root switch: its mounts must land in the root that stays


def op_hello(args: dict[str, Any], data: bytes, emit: Emit) -> dict[str, Any]:
    if args.get("standby"):
        STANDBY.set()
    else:
        STANDBY.clear()
    if args.get("time"):
        boot.set_clock(float(args["time"]))
    if data:
        boot.mix_entropy(data)
    if args.get("limits"):
        from . import limits

        # Set up beside the answer (it spawns `mount`: ~0.1 s in gVisor). A process started
        # before it is in place still counts: the watchdog counts the whole hierarchy, and
        # the engine's own limits hold around the sandbox.
        setup = threading.Thread(target=limits.apply, args=(args["limits"],), daemon=True)
        setup.start()
        SETUP.append(setup)
    uname = os.uname()
    return {
        "protocol": PROTOCOL_VERSION,
        "agent_version": AGENT_VERSION,
        "kernel": f"{uname.sysname} {uname.release}",
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }


def op_exec(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    return run_command(args, emit, data)


def op_exec_cancel(args: dict[str, Any], data: bytes, emit: Emit) -> dict[str, Any]:
    """End a running exec (its whole process group); it answers with what ran so far."""
    return {"cancelled": cancel(str(args.get("cancel_key") or ""))}


def op_sync(args: dict[str, Any], data: bytes, emit: Emit) -> dict[str, Any]:
    os.sync()
    return {}


def op_file_list(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import files

    return files.list_files(args["path"], bool(args.get("recursive")), _root(args))


def op_file_read(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import files

    result = files.read_file(args["path"], int(args["max_bytes"]), _root(args))
    content = result.pop("content_bytes")
    return result, content


def op_file_write(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import files

    return files.write_file(args["path"], data, _root(args))


def op_file_delete(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import files

    return files.delete_file(args["path"], _root(args))


def op_tar_in(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import archive

    # data: the request's bytes, or its upload's Chunks (read as a stream)
    return archive.unpack(args["dest"], data, _root(args), bool(args.get("guest_links")))


def op_tar_out(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import archive

    return archive.tar_out(args["path"], _root(args), emit if args.get("stream") else None)


def op_mount_workspace(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    boot.mount_workspace(args["device"], paths.ROOT)
    return {"mounted": paths.ROOT}


def op_system_root(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import sysroot

    for setup in SETUP:
        setup.join(timeout=30)
    return sysroot.switch(args["device"])


def op_secrets_install(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    values = json.loads(data.decode("utf-8")) if data else {}
    return {"installed": secrets.install(values, str(args.get("dir") or secrets.SECRETS_DIR))}


def op_shell_open(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import shells

    return shells.open_shell(args)


def op_shell_read(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import shells

    shell = shells.get(str(args["shell_id"]))
    return shell.read(int(args.get("cursor") or 0), int(args["max_chars"]))


def op_shell_write(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import shells

    shell = shells.get(str(args["shell_id"]))
    shell.write(data.decode("utf-8"))
    return shell.summary()


def op_shell_signal(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import shells

    shell = shells.get(str(args["shell_id"]))
    shell.signal(str(args["signal"]))
    return shell.summary()


def op_shell_close(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import shells

    return shells.close_shell(str(args["shell_id"]))


def op_service_start(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import services

    return services.start(args)


def op_service_status(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import services

    return services.get(str(args["name"])).payload()


def op_service_list(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import services

    return {"services": services.list_all()}


def op_service_logs(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import services

    tail = args.get("tail_lines")
    return services.logs(str(args["name"]), None if tail is None else int(tail))


def op_service_stop(args: dict[str, Any], data: bytes, emit: Emit) -> Result:
    from . import services

    return services.stop(str(args["name"]))


def _root(args: dict[str, Any]) -> str:
    """Tests (and the unisolated host-compat mode) may re-root the workspace."""
    return str(args.get("root") or paths.ROOT)


def op_network(args: dict[str, Any], data: bytes, emit: Emit) -> dict[str, Any]:
    proxy = args.get("proxy")
    if args.get("trust_ca"):  # the egress proxy's CA (brokered secrets)
        netenv.trust(str(args["trust_ca"]))
    if args.get("tunnel"):  # gVisor: loopback only, the proxy through the host's socket
        from . import tunnel

        tunnel.serve_proxy(int(args["proxy_port"]), f"{args['tunnel']}/proxy.sock")
        netenv.set_proxy(proxy)
        return {"interface": "lo", "proxy": proxy}
    name = boot.configure_network(
        args["guest_ip"],
        args["gateway_ip"],
        args["subnet_cidr"],
        list(args["dns_servers"]),
        default_route=not proxy,
    )
    netenv.set_proxy(proxy)
    return {"interface": name, "proxy": proxy}


def op_port_connect(args: dict[str, Any], data: bytes, emit: Emit) -> dict[str, Any]:
    """A published port's connection (gVisor): the guest port joined to the host's socket."""
    from . import tunnel

    tunnel.port_connect(int(args["port"]), str(args["socket"]), bytes.fromhex(args["token"]))
    return {}


HANDLERS: dict[str, Handler] = {
    "hello": op_hello,
    "exec": op_exec,
    "exec_cancel": op_exec_cancel,
    "sync": op_sync,
    "network": op_network,
    "port_connect": op_port_connect,
    "file_list": op_file_list,
    "file_read": op_file_read,
    "file_write": op_file_write,
    "file_delete": op_file_delete,
    "tar_in": op_tar_in,
    "tar_out": op_tar_out,
    "mount_workspace": op_mount_workspace,
    "system_root": op_system_root,
    "secrets_install": op_secrets_install,
    "shell_open": op_shell_open,
    "shell_read": op_shell_read,
    "shell_write": op_shell_write,
    "shell_signal": op_shell_signal,
    "shell_close": op_shell_close,
    "service_start": op_service_start,
    "service_status": op_service_status,
    "service_list": op_service_list,
    "service_logs": op_service_logs,
    "service_stop": op_service_stop,
    "fs_freeze": freeze.op_fs_freeze,  # a full snapshot's or a fork's copy (freeze.py)
    "fs_thaw": freeze.op_fs_thaw,
}


class Agent:
    def __init__(self, reader: IO[bytes], writer: IO[bytes]) -> None:
        self.reader = reader
        self.writer = writer
        self.lock = threading.Lock()
        self.frames = 0
        self.workers = Workers("pyro-agent")
        self.uploads = Uploads()

    def send(self, message: dict[str, Any], data: bytes = b"") -> None:
        try:
            frame = encode(message, data)
        except FrameTooLarge as exc:  # answer with an error; the stream stays in step
            if "event" in message:
                raise
            frame = encode({"id": message.get("id"), "ok": False, "error": str(exc)})
        with self.lock:
            try:
                self.writer.write(frame)
                self.writer.flush()
            except OSError:
                pass  # the host went away; the request's result is lost with it

    def handle(self, message: dict[str, Any], data: Any) -> None:
        req_id = message.get("id")
        handler = HANDLERS.get(str(message.get("op")))
        if isinstance(data, Chunks) and handler is not op_tar_in:
            handler = None  # only tar_in reads an upload

        def emit(kind: str, chunk: bytes) -> None:
            self.send({"id": req_id, "event": kind}, chunk)

        if handler is None:
            self.send({"id": req_id, "ok": False, "error": f"unknown op {message.get('op')!r}"})
            return
        try:
            result = handler(message.get("args") or {}, data, emit)
        except Exception as exc:  # every failure becomes an error reply, never a dead agent
            kind = "invalid" if isinstance(exc, ValueError) else "failed"
            error = secrets.redact_text(_describe(exc))
            self.send({"id": req_id, "ok": False, "error": error, "kind": kind})
            return
        if isinstance(result, tuple):
            self.send({"id": req_id, "ok": True, "result": result[0]}, result[1])
        else:
            self.send({"id": req_id, "ok": True, "result": result})
        if handler is op_exec:  # answered: now start the shell for the next exec
            prepare_next(message.get("args") or {})

    def serve(self) -> None:
        while True:
            message, data = read_frame(self.reader)
            self.frames += 1
            if not self.uploads.route(message, data):  # an upload's chunk: delivered
                body = self.uploads.body(message, data)
                self.workers.submit(serve, self.handle, message, body)


def _describe(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def serve_stdio() -> None:
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    # Nothing else may write to the protocol stream: point fds 0/1 at /dev/null.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    try:
        Agent(reader, writer).serve()
    except ProtocolError:
        return  # host closed the stream: the sandbox ends with us


def serve_virtio() -> None:
    """Serve the host over the virtio-serial port until the host hangs up for good.

    Reads return EOF while no host is connected: before the first frame that means "not yet",
    so poll; after it, the host has gone and the VM ends (its owner is gone too).
    """
    path = boot.find_virtio_port("org.pyro.agent")
    while True:
        fd = os.open(path, os.O_RDWR)
        reader = os.fdopen(fd, "rb")
        writer = os.fdopen(os.dup(fd), "wb")
        agent = Agent(reader, writer)
        try:
            agent.serve()
        except ProtocolError:
            pass
        reader.close()
        writer.close()
        if agent.frames and not STANDBY.is_set():
            return
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    # No argparse: every import costs real time in an emulated guest.
    args = sys.argv[1:] if argv is None else argv
    init = "--init" in args
    channel = args[args.index("--channel") + 1] if "--channel" in args else "stdio"
    if channel not in ("stdio", "virtio"):
        sys.exit(f"pyro-guest-agent: unknown channel {channel!r}")
    if channel == "virtio":
        boot.setup_vm()
    if init:
        boot.become_init(poweroff=channel == "virtio")
        NEXT_SHELL.enable()  # only in a sandbox: on the host (host_compat) start as usual
    if channel == "virtio":
        serve_virtio()
    else:
        serve_stdio()
    sys.exit(0)


if __name__ == "__main__":
    main()
