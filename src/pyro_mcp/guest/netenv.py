"""The proxy variables every process the agent starts gets (exec, shells, services).

Set by the ``network`` op: a networked guest's only way out is the host's egress proxy,
so HTTP clients (curl, pip, apt, git, npm) are pointed at it; local addresses bypass it.
"""

from __future__ import annotations

import os

NO_PROXY = "localhost,127.0.0.1,::1"
PROXY_ENV: dict[str, str] = {}
TRUST_ENV: dict[str, str] = {}  # set by ``trust`` (before ``set_proxy``)


def set_proxy(url: str | None) -> None:
    PROXY_ENV.clear()
    if url:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            PROXY_ENV[name] = url
        PROXY_ENV["NO_PROXY"] = PROXY_ENV["no_proxy"] = NO_PROXY
        PROXY_ENV.update(TRUST_ENV)


# The system bundle (OpenSSL, curl, git, Python) and the extra-CA variables of the clients
# that keep their own (Node, requests/pip).
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_FILE = "/usr/local/share/ca-certificates/pyro-egress.crt"
_BEGIN = "# pyro egress proxy CA (brokered secrets): begin\n"
_END = "# pyro egress proxy CA: end\n"


def trust(pem: str, bundle: str = CA_BUNDLE, ca_file: str = CA_FILE) -> None:
    """Trust the egress proxy's CA: its block in the system bundle replaced (a restarted
    workspace gets a new CA), its own file beside it."""
    os.makedirs(os.path.dirname(ca_file), exist_ok=True)
    with open(ca_file, "w") as handle:
        handle.write(pem)
    try:
        with open(bundle) as handle:
            text = handle.read()
    except FileNotFoundError:
        os.makedirs(os.path.dirname(bundle), exist_ok=True)
        text = ""
    start = text.find(_BEGIN)
    if start != -1:
        end = text.find(_END, start)
        text = text[:start] + (text[end + len(_END) :] if end != -1 else "")
    if text and not text.endswith("\n"):
        text += "\n"
    tmp = f"{bundle}.pyro-tmp"
    with open(tmp, "w") as handle:
        handle.write(text + _BEGIN + pem + _END)
    os.replace(tmp, bundle)
    TRUST_ENV.update(NODE_EXTRA_CA_CERTS=ca_file, REQUESTS_CA_BUNDLE=bundle)
