"""Hand one guest connection to the egress proxy (QEMU's ``guestfwd ... cmd:`` helper).

QEMU runs this once per guest connection to the proxy address, with the connection as
stdin. It passes that socket to the proxy's Unix socket (``SCM_RIGHTS``) and exits, so the
proxy holds the guest's connection directly and no process copies the bytes. Standard
library only: it runs as ``python -I -S fdpass.py SOCKET``.
"""

import os
import socket
import sys


def main() -> int:
    path = sys.argv[1]
    os.chdir(os.path.dirname(path) or ".")  # a relative name: no Unix path length limit
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(os.path.basename(path))
        socket.send_fds(sock, [b"F"], [0])
        sock.recv(1)  # the proxy has the descriptor once it answers (or hangs up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
