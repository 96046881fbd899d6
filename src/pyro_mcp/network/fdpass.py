"""Hand one guest connection to the egress proxy (QEMU's ``guestfwd ... cmd:`` helper).

QEMU runs this once per guest connection to the proxy address, with the connection as
stdin. It passes that socket to the proxy's Unix socket (``SCM_RIGHTS``) and exits, so the
proxy holds the guest's connection directly and no process copies the bytes. Standard
library only: it runs as ``python -I -S fdpass.py SOCKET``. The gVisor engine hands its
guests' connections over with the same ``hand_over``.
"""

import os
import socket
import sys


def hand_over(address: str, fd: int) -> None:
    """Pass ``fd`` to the proxy listening at ``address``; returns once the proxy has it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        socket.send_fds(sock, [b"F"], [fd])
        sock.recv(1)  # the proxy has the descriptor once it answers (or hangs up)


def main() -> int:
    path = sys.argv[1]
    os.chdir(os.path.dirname(path) or ".")  # a relative name: no Unix path length limit
    hand_over(os.path.basename(path), 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
