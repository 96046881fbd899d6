"""`make bench`, gVisor networking figures (issue 11), each beside the bare engine measured in
the same run (``--only network`` runs just these):

- create of a workspace with network policy ``egress+published-ports`` (the egress proxy,
  the agent's proxy listener and the host socket directory all set up) against a bare
  `runsc run` of /bin/true with pyro's own OCI config (agent mounted), and for information
  the same create with policy ``off`` (what the network itself adds);
- 100 MB read by the host from a guest server over a published port (host relay, the
  sandbox's Unix socket, the agent's relay, the guest's loopback) against the same 100 MB
  over a raw socket pair on the host's loopback.
"""

from __future__ import annotations

import socket
import statistics
import threading
from typing import Any

from bench_support import BareRunsc, Stats, timed

ENVIRONMENT = "debian:12"
CREATE_TARGET_S = 1.0
THROUGHPUT_TARGET_MBS = 100.0
TRANSFER_BYTES = 100 * 1024 * 1024
CREATE_RUNS = 3
TRANSFER_RUNS = 3
GUEST_PORT = 9000
# Serves TRANSFER_BYTES of zeros to each connection (in the guest); the readiness probe's
# connection hangs up early.
SERVER = (
    'python3 -c "import socket\n'
    "s = socket.create_server(('127.0.0.1', {port}))\n"
    "chunk = bytes(1 << 20)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    try:\n"
    "        for _ in range({mib}): c.sendall(chunk)\n"
    "    except OSError: pass\n"
    '    c.close()"'
)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def read_all(port: int) -> int:
    total = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        while chunk := sock.recv(1 << 20):
            total += len(chunk)
    if total != TRANSFER_BYTES:
        raise RuntimeError(f"bench: read {total} bytes over the published port")
    return total


def loopback_copy() -> float:
    """The bare figure: TRANSFER_BYTES over a socket pair on the host's loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        chunk = bytes(1 << 20)
        for _ in range(TRANSFER_BYTES >> 20):
            conn.sendall(chunk)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        return timed(lambda: read_all(port))[0]
    finally:
        thread.join()
        server.close()


def section_network(bench: Any) -> None:
    print("\n== gVisor networking: networked create, 100 MB over a published port ==")
    bare = BareRunsc(bench.workdir / "bare-net", bench.env, bench.agent_dir)
    create_s: list[float] = []
    off_s: list[float] = []
    bare_boot_s: list[float] = []
    transfer_s: list[float] = []
    loopback_s: list[float] = []
    with bench.pyro("gvisor") as pyro:
        for _ in range(CREATE_RUNS + 1):  # the first of each is an untimed warm-up
            elapsed, ws = timed(
                lambda: pyro.create_workspace(
                    environment=ENVIRONMENT, network_policy="egress+published-ports"
                )
            )
            create_s.append(elapsed)
            bare_boot_s.append(bare.one_shot(["/bin/true"], agent=True))
            elapsed, off = timed(lambda: pyro.create_workspace(environment=ENVIRONMENT))
            off_s.append(elapsed)
            pyro.delete_workspace(off["workspace_id"])
            if len(create_s) <= CREATE_RUNS:
                pyro.delete_workspace(ws["workspace_id"])
        wid = ws["workspace_id"]
        try:
            if ws["engine"] != "gvisor":
                raise RuntimeError(f"bench: the networked workspace runs on {ws['engine']}")
            service = pyro.start_service(
                wid,
                "zeros",
                SERVER.format(port=GUEST_PORT, mib=TRANSFER_BYTES >> 20),
                readiness={"type": "tcp", "address": f"127.0.0.1:{GUEST_PORT}"},
                published_ports=[{"guest_port": GUEST_PORT}],
            )
            port = int(service["published_ports"][0]["host_port"])
            read_all(port)
            loopback_copy()
            for _ in range(TRANSFER_RUNS):
                transfer_s.append(timed(lambda: read_all(port))[0])
                loopback_s.append(loopback_copy())
        finally:
            pyro.delete_workspace(wid)
    report(create_s[1:], off_s[1:], bare_boot_s[1:], transfer_s, loopback_s)
    from bench_broker import section_broker  # issue 15, information

    section_broker(bench)


def report(
    create_s: list[float],
    off_s: list[float],
    bare_boot_s: list[float],
    transfer_s: list[float],
    loopback_s: list[float],
) -> None:
    st, boot = Stats(create_s), statistics.median(bare_boot_s)
    print(
        f"networked gVisor workspace create (egress+published-ports): median {st.median:.2f} s "
        f"(min {st.low:.2f}, max {st.high:.2f})  bare runsc run: {boot:.2f} s  ratio "
        f"{st.median / boot:.2f}  (target <= {CREATE_TARGET_S} s: "
        f"{verdict(st.median <= CREATE_TARGET_S)})"
    )
    print(f"  for information, the same create with policy off: {Stats(off_s).seconds()}")
    mb = TRANSFER_BYTES / 1e6
    rate = mb / statistics.median(transfer_s)
    bare_rate = mb / statistics.median(loopback_s)
    print(
        f"100 MB over a published gVisor port: median {rate:.0f} MB/s "
        f"(min {mb / max(transfer_s):.0f}, max {mb / min(transfer_s):.0f})  bare loopback "
        f"socket copy: {bare_rate:.0f} MB/s  ratio {rate / bare_rate:.2f}  "
        f"(target >= {THROUGHPUT_TARGET_MBS:.0f} MB/s: {verdict(rate >= THROUGHPUT_TARGET_MBS)})"
    )
