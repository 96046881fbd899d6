"""Brokered secrets without a guest: their rules, their store, and the intercepting proxy
with a local HTTPS upstream (its own test CA, trusted through PYRO_EGRESS_CA_BUNDLE)."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.network import broker
from pyro_mcp.network.proxy import EgressProxy, forward_command, pinned_addresses
from pyro_mcp.workspaces import secrets as secret_store
from support import short_tmp_dir
from tls_upstream import Upstream, upstream_ca

VALUE = "ghp_brokered-0123456789"


def save(store: Path, *items: dict[str, object]) -> None:
    secret_store.store(store, secret_store.resolve(list(items)))


def test_resolve_checks_bindings_and_names_the_secret_never_the_value() -> None:
    bad = [
        ({"hosts": ["not a host"]}, "secret 'GH' hosts"),
        ({"hosts": []}, "at least one host"),
        ({"hosts": ["a.example"], "header": "Host"}, "cannot go in the Host header"),
        ({"hosts": ["a.example"], "header": "Bad Header"}, "HTTP header name"),
        ({"hosts": ["a.example"], "format": "token"}, "{value} once"),
        ({"hosts": ["a.example"], "format": "{value}\r\nX: {value}"}, "{value} once"),
        ({"header": "X-Key"}, "header and format need hosts"),
    ]
    for extra, message in bad:
        with pytest.raises(ValidationError, match=message) as caught:
            secret_store.resolve([{"name": "GH", "value": VALUE, **extra}])
        assert VALUE not in str(caught.value)
    for bad_value in ("a\nb", "a\x01b", "a\x7fb"):
        with pytest.raises(ValidationError, match="must be one line of text"):
            secret_store.resolve([{"name": "GH", "value": bad_value, "hosts": ["a.example"]}])
    [secret] = secret_store.resolve([{"name": "GH", "value": VALUE, "hosts": ["A.example."]}])
    assert secret.binding == broker.Binding(("a.example",))
    assert secret.public() == {"name": "GH", "source_kind": "literal", "hosts": ["a.example"]}
    with pytest.raises(ValidationError, match="needs network_policy 'egress'"):
        secret_store.check_network([secret], "off")


def test_cli_forms_join_hosts_to_their_secret(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(VALUE + "\n")  # a file's line ending is not part of a header value
    items = [
        *secret_store.parse_cli([f"GH=@{token}", "PLAIN=x"], "value"),
        *secret_store.parse_cli(["GH=api.example.com", "GH=*.example.org"], "hosts"),
        *secret_store.parse_cli(["GH=X-Api-Key"], "header"),
    ]
    gh, plain = secret_store.resolve(items)
    assert (gh.value, gh.kind, plain.binding) == (VALUE, "file", None)
    assert gh.binding == broker.Binding(("api.example.com", "*.example.org"), "X-Api-Key")
    with pytest.raises(ValidationError, match="--secret-host NOPE: no such --secret"):
        secret_store.resolve(secret_store.parse_cli(["NOPE=a.example"], "hosts"))
    with pytest.raises(ValidationError, match="--secret-host expects NAME=HOST"):
        secret_store.parse_cli(["GH"], "hosts")


def test_the_guest_gets_a_placeholder_that_survives_rotation(tmp_path: Path) -> None:
    store = tmp_path / "secrets"
    save(store, {"name": "GH", "value": VALUE, "hosts": ["a.example"]}, {"name": "P", "value": "v"})
    installed = json.loads(secret_store.install_payload(store))
    assert installed["P"] == "v" and installed["GH"].startswith("pyro-secret-GH-")
    assert VALUE not in json.dumps(installed)
    assert secret_store.load(store) == {"GH": VALUE, "P": "v"}  # not broker.json
    save(store, {"name": "GH", "value": "new", "hosts": ["a.example"]})
    assert json.loads(secret_store.install_payload(store))["GH"] == installed["GH"]
    assert broker.Brokered.read(store).values == {"GH": "new"}
    assert VALUE.encode() not in (store / broker.BROKER_FILE).read_bytes()


def test_rewrite_fills_only_the_bound_host_and_header() -> None:
    mark = "pyro-secret-GH-00"
    brokered = broker.Brokered(
        {"GH": broker.Binding(("api.example",), placeholder=mark)}, {"GH": VALUE}
    )
    sent = [(b"authorization", f"Bearer {mark}".encode())]
    headers, used = brokered.rewrite("api.example", sent)
    assert headers == [(b"authorization", f"Bearer {VALUE}".encode())] and used == ["GH"]
    added, _ = brokered.rewrite("api.example", [(b"accept", b"*/*")])
    assert (b"Authorization", f"Bearer {VALUE}".encode()) in added
    other, used = brokered.rewrite("other.example", sent)
    assert other == sent and used == []
    assert brokered.leftovers(b"".join(k + v for k, v in other)) == ["GH"]
    assert brokered.intercepts("api.example") and not brokered.intercepts("other.example")
    assert pinned_addresses("a.test=127.0.0.1, bad ,b.test=::1") == {
        "a.test": "127.0.0.1",
        "b.test": "::1",
    }


# -- the proxy, intercepting ----------------------------------------------------------------


@pytest.fixture
def scratch() -> Iterator[Path]:
    directory = short_tmp_dir("pyro-brk-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def setup(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    ca, ca_file = upstream_ca(scratch)
    bound = Upstream(ca, "api.pyro.test", scratch)
    other = Upstream(ca, "other.pyro.test", scratch)
    monkeypatch.setenv("PYRO_EGRESS_RESOLVE", "api.pyro.test=127.0.0.1,other.pyro.test=127.0.0.1")
    monkeypatch.setenv("PYRO_EGRESS_CA_BUNDLE", str(ca_file))
    store = scratch / "secrets"
    save(store, {"name": "GH", "value": VALUE, "hosts": ["api.pyro.test"]})
    proxy = EgressProxy(scratch / "network", store)
    mark = json.loads(secret_store.install_payload(store))["GH"]
    yield {"proxy": proxy, "bound": bound, "other": other, "mark": mark, "store": store}
    proxy.close()
    bound.close()
    other.close()


def _connect(proxy: EgressProxy) -> socket.socket:
    guest, ours = socket.socketpair()
    subprocess.run(
        shlex.split(forward_command(str(proxy.socket_path))),
        stdin=guest.fileno(),
        timeout=10,
        check=True,
    )
    guest.close()
    ours.settimeout(10)
    return ours


def https_get(proxy: EgressProxy, host: str, port: int, headers: str) -> bytes:
    """One request as a guest makes it: CONNECT, TLS trusting the proxy's CA, GET."""
    request = f"GET /x HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    return tls_exchange(proxy, host, port, request.encode())


def tls_exchange(proxy: EgressProxy, host: str, port: int, request: bytes) -> bytes:
    """CONNECT to ``host``, TLS trusting the proxy's CA, ``request`` sent as is: the answer."""
    sock = _connect(proxy)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cadata=proxy.authority.pem)
    with context.wrap_socket(sock, server_hostname=host) as tls:
        tls.sendall(request)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def test_the_bound_host_gets_the_value_and_rotation_counts_at_once(setup: dict) -> None:
    proxy, bound, mark = setup["proxy"], setup["bound"], setup["mark"]
    answer = https_get(proxy, "api.pyro.test", bound.port, f"Authorization: Bearer {mark}\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"upstream ok /x")
    assert bound.seen[-1]["headers"]["authorization"] == f"Bearer {VALUE}"
    save(setup["store"], {"name": "GH", "value": "rotated", "hosts": ["api.pyro.test"]})
    https_get(proxy, "api.pyro.test", bound.port, "")  # no header: added
    assert bound.seen[-1]["headers"]["authorization"] == "Bearer rotated"
    rows = proxy.log.entries()
    assert [r["reason"] for r in rows if r["method"] == "GET"] == ["secret GH added"] * 2


def test_a_placeholder_elsewhere_is_not_replaced_and_logged_denied(setup: dict) -> None:
    proxy, other, mark = setup["proxy"], setup["other"], setup["mark"]
    # plain http to a host the secret is not bound to: seen by the proxy, not replaced
    sock = _connect(proxy)
    target = f"http://other.pyro.test:{other.port}/leak"
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nX-Token: {mark}\r\n\r\n".encode())
    sock.recv(4096)  # the TLS upstream answers nonsense to plain http: no matter here
    sock.close()
    denied = [r for r in proxy.log.entries() if not r["allowed"]]
    assert denied and denied[0]["host"] == "other.pyro.test"
    assert "denied use of secret GH" in str(denied[0]["reason"])
    assert VALUE not in json.dumps(proxy.log.entries())


def test_an_untrusted_upstream_is_refused(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYRO_EGRESS_CA_BUNDLE")
    proxy = EgressProxy(setup["proxy"].directory.parent / "network2", setup["store"])
    try:
        answer = https_get(proxy, "api.pyro.test", setup["bound"].port, "")
    finally:
        proxy.close()
    assert answer.startswith(b"HTTP/1.1 502") and b"not trusted" in answer
    assert setup["bound"].seen == []


def test_a_request_naming_another_host_gets_no_value(setup: dict) -> None:
    """Domain fronting: the CONNECT names the bound host, the request another one (Host
    header or absolute-form target); a front end routing by name would hand it the value."""
    proxy, bound = setup["proxy"], setup["bound"]
    fronted = [
        "GET /x HTTP/1.1\r\nHost: other.pyro.test\r\nConnection: close\r\n\r\n",
        "GET https://other.pyro.test/x HTTP/1.1\r\nHost: api.pyro.test\r\n\r\n",
        "CONNECT other.pyro.test:443 HTTP/1.1\r\nHost: api.pyro.test\r\n\r\n",
        "GET https://other.pyro.test\\@api.pyro.test/x HTTP/1.1\r\nHost: api.pyro.test\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: other.pyro.test@api.pyro.test\r\n\r\n",
        # the second request of a kept-alive connection
        "GET /ok HTTP/1.1\r\nHost: API.pyro.test.\r\n\r\n"
        "GET /x HTTP/1.1\r\nHost: other.pyro.test\r\nConnection: close\r\n\r\n",
    ]
    for request in fronted:
        answer = tls_exchange(proxy, "api.pyro.test", bound.port, request.encode())
        assert b"HTTP/1.1 421" in answer and b"not api.pyro.test" in answer, answer
    assert [seen["path"] for seen in bound.seen] == ["/ok"]
    refused = [r for r in proxy.log.entries() if r["method"] and not r["allowed"]]
    assert len(refused) == len(fronted)
    assert all("other.pyro.test" in str(r["reason"]) for r in refused)
    assert VALUE not in json.dumps(proxy.log.entries())
    same = "GET https://api.pyro.test/y HTTP/1.1\r\nHost: api.pyro.test:443\r\n"
    same += "Connection: close\r\n\r\n"
    answer = tls_exchange(proxy, "api.pyro.test", bound.port, same.encode())
    assert answer.startswith(b"HTTP/1.1 200")
    assert bound.seen[-1]["headers"]["authorization"] == f"Bearer {VALUE}"


def test_a_value_h11_would_refuse_is_never_quoted(setup: dict) -> None:
    """h11 quotes a header value it refuses: edge whitespace is refused up front, and a
    stored value that still breaks the request is never quoted back to the guest or log."""
    for bad in ({"value": VALUE + " "}, {"value": "\t" + VALUE}, {"format": "{value} "}):
        with pytest.raises(ValidationError, match="one line") as caught:
            secret_store.resolve([{"name": "GH", "value": VALUE, "hosts": ["a.example"], **bad}])
        assert VALUE not in str(caught.value)
    stored = secret_store.Secret("GH", VALUE + " ", "literal", broker.Binding(("api.pyro.test",)))
    secret_store.store(setup["store"], [stored])  # as an older version could have stored it
    proxy = setup["proxy"]
    answer = https_get(proxy, "api.pyro.test", setup["bound"].port, "")
    assert answer.startswith(b"HTTP/1.1 502") and b"not valid HTTP/1.1" in answer
    assert VALUE.encode() not in answer and setup["bound"].seen == []
    assert VALUE not in json.dumps(proxy.log.entries())


def test_rotation_is_atomic_for_a_concurrent_reader(tmp_path: Path) -> None:
    """The proxy reads the store on every request: mid-rotation it must see the old value or
    the new one, never an empty or half-written one (sent as the credential)."""
    store = tmp_path / "secrets"
    old, new = "a" * 60000, "b" * 60000
    save(store, {"name": "GH", "value": old, "hosts": ["a.example"]})
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            value = broker.Brokered.read(store).values.get("GH", "")
            if value not in (old, new):
                seen.add(len(value))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for i in range(150):
            save(store, {"name": "GH", "value": new if i % 2 else old, "hosts": ["a.example"]})
    finally:
        done.set()
        reader.join(timeout=10)
    assert seen == set()
    assert sorted(p.name for p in store.iterdir()) == ["GH", broker.BROKER_FILE]


def test_trace_is_refused_on_an_intercepted_connection(setup: dict) -> None:
    """TRACE echoes the request, the added credential included (Apache's default)."""
    proxy, bound = setup["proxy"], setup["bound"]
    for method in ("TRACE", "trace", "TRACK"):
        request = f"{method} /t HTTP/1.1\r\nHost: api.pyro.test\r\nConnection: close\r\n\r\n"
        answer = tls_exchange(proxy, "api.pyro.test", bound.port, request.encode())
        assert answer.startswith(b"HTTP/1.1 405") and VALUE.encode() not in answer, answer
    assert bound.seen == []
    assert VALUE not in json.dumps(proxy.log.entries())


def test_a_wildcard_over_a_whole_top_level_domain_is_refused() -> None:
    """``*.com`` would hand the value to any host a guest's owner can register."""
    for hosts in (["*.com"], ["api.example.com", "*.IO."]):
        with pytest.raises(ValidationError, match="a whole top-level domain") as caught:
            secret_store.resolve([{"name": "GH", "value": VALUE, "hosts": hosts}])
        assert VALUE not in str(caught.value)
    [ok] = secret_store.resolve([{"name": "GH", "value": VALUE, "hosts": ["*.example.com"]}])
    assert ok.binding is not None and ok.binding.hosts == ("*.example.com",)


def test_an_http10_request_without_host_gets_a_clear_answer(setup: dict) -> None:
    answer = tls_exchange(
        setup["proxy"], "api.pyro.test", setup["bound"].port, b"GET / HTTP/1.0\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 502") and b"needs a Host header" in answer
