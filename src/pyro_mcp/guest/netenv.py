"""The proxy variables every process the agent starts gets (exec, shells, services).

Set by the ``network`` op: a networked guest's only way out is the host's egress proxy,
so HTTP clients (curl, pip, apt, git, npm) are pointed at it; local addresses bypass it.
"""

from __future__ import annotations

NO_PROXY = "localhost,127.0.0.1,::1"
PROXY_ENV: dict[str, str] = {}


def set_proxy(url: str | None) -> None:
    PROXY_ENV.clear()
    if url:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            PROXY_ENV[name] = url
        PROXY_ENV["NO_PROXY"] = PROXY_ENV["no_proxy"] = NO_PROXY
