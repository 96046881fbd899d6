"""Hostile input to workspaces is refused with a clear error, and the host stays untouched.

Every hostile name carries this module's random token and every absolute target points into
a sentinel directory, so "the host is untouched" is checked concretely after each refusal:
the sentinel directory is still empty and no file named with the token exists in /, /etc,
/tmp, /root, the working directory, or anywhere under the state and scratch directories.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyro_mcp import Pyro
from support import ENVIRONMENT, pyro_argv, short_tmp_dir, stop_cli_helpers
from workspace_fixtures import *  # noqa: F403  (the fixtures)
from workspace_fixtures import McpClient, cli_error, cli_json, forget, write_tree

TOKEN = f"pyro-planted-{uuid.uuid4().hex[:10]}"
SEED_FILES = {"a.txt": "one\ntwo\nthree\n", "b.txt": "bee\n", "d/keep.txt": "kept\n"}


# -- the canary ---------------------------------------------------------------------------------


class Canary:
    """Where a hostile write would land, and a check that nothing landed anywhere."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = short_tmp_dir("pyro-canary-")
        self.sentinel = self.root / "sentinel"
        self.sentinel.mkdir()

    def check(self) -> None:
        assert list(self.sentinel.iterdir()) == [], "a hostile write reached the sentinel dir"
        shallow = [Path(p) for p in ("/", "/etc", "/tmp", "/root", "/var/tmp", os.getcwd())]
        hits = [
            str(entry)
            for directory in shallow
            for entry in directory.iterdir()
            if TOKEN in entry.name
        ]
        for directory in (self.root, self.home):
            hits += [str(p) for p in directory.rglob(f"*{TOKEN}*")]
        assert hits == [], f"hostile names appeared on the host: {hits}"


@pytest.fixture(scope="module")
def canary(ws_home: Path) -> Iterator[Canary]:
    made = Canary(ws_home)
    yield made
    made.check()
    shutil.rmtree(made.root, ignore_errors=True)


def refused(canary: Canary, call: Callable[..., Any], *args: Any, match: str, **kw: Any) -> str:
    """``call`` must raise ValueError matching ``match``; then the host must be untouched."""
    with pytest.raises(ValueError, match=match) as info:
        call(*args, **kw)
    canary.check()
    return str(info.value)


@pytest.fixture(scope="module")
def live(ws_pyro: Pyro, canary: Canary) -> Iterator[str]:
    """One running workspace seeded with SEED_FILES, shared by the module's read-only probes."""
    seed = write_tree(canary.root / "seed", SEED_FILES)
    workspace_id = ws_pyro.create_workspace(environment=ENVIRONMENT, seed_path=str(seed))[
        "workspace_id"
    ]
    yield workspace_id
    forget(ws_pyro, workspace_id)


def assert_unchanged(pyro: Pyro, workspace_id: str) -> None:
    """The live workspace still holds exactly its seed."""
    diff = pyro.diff_workspace(workspace_id)
    assert (diff["changed"], diff["entries"]) == (False, [])
    for name, text in SEED_FILES.items():
        assert pyro.read_workspace_file(workspace_id, name)["content"] == text


# -- hostile archives ---------------------------------------------------------------------------


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = "") -> Any:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def hostile_members(case: str, sentinel: Path) -> list[Any]:
    up = "../" * 12 + str(sentinel).lstrip("/")  # lands in the sentinel from any depth < 12
    cases: dict[str, list[Any]] = {
        "dotdot": [member("ok.txt"), member(f"{up}/{TOKEN}")],
        "dotdot-inside-name": [member(f"d/../../{TOKEN}")],
        "absolute": [member(f"{sentinel}/{TOKEN}")],
        "hard-link-out": [member(TOKEN, tarfile.LNKTYPE, link="/etc/passwd")],
        "hard-link-in": [member("a.txt"), member(TOKEN, tarfile.LNKTYPE, link="a.txt")],
        "char-device": [member(TOKEN, tarfile.CHRTYPE)],
        "block-device": [member(TOKEN, tarfile.BLKTYPE)],
        "fifo": [member(TOKEN, tarfile.FIFOTYPE)],
        "symlink-to-etc": [member("etc", tarfile.SYMTYPE, link="/etc")],
        "symlink-up": [member("up", tarfile.SYMTYPE, link="../..")],
        "symlink-chain-escape": [
            member("d", tarfile.DIRTYPE),
            member("d/l", tarfile.SYMTYPE, link=".."),
            member("x", tarfile.SYMTYPE, link="d/l/.."),
        ],
        "through-symlinked-parent": [
            member("sub", tarfile.DIRTYPE),
            member("link", tarfile.SYMTYPE, link="sub"),
            member(f"link/{TOKEN}"),
        ],
        "through-absolute-symlink": [
            member("out", tarfile.SYMTYPE, link=str(sentinel)),
            member(f"out/{TOKEN}"),
        ],
        "type-conflict": [member("a"), member("a/b")],
        "duplicate": [member("a"), member("a")],
    }
    return cases[case]


ARCHIVE_ERRORS = {
    "dotdot": "'..' segments are not allowed",
    "dotdot-inside-name": "'..' segments are not allowed",
    "absolute": "absolute paths are not allowed",
    "hard-link-out": "hard links are not allowed",
    "hard-link-in": "hard links are not allowed",
    "char-device": "device files are not allowed",
    "block-device": "device files are not allowed",
    "fifo": "FIFOs are not allowed",
    "symlink-to-etc": "symlink target '/etc' is absolute",
    "symlink-up": "escapes the archive root",
    "symlink-chain-escape": "escapes the archive root",
    "through-symlinked-parent": "symlinked parent",
    "through-absolute-symlink": "is absolute",
    "type-conflict": "parent 'a' is a regular file",
    "duplicate": "appears more than once",
}


def write_archive(path: Path, members: list[Any]) -> Path:
    mode = "w:gz" if path.name.endswith(".tgz") else "w"
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


ARCHIVE_CASES = [
    pytest.param(case, suffix, id=f"{case}{suffix}")
    for case in ARCHIVE_ERRORS
    for suffix in (".tar", ".tgz")
]


@pytest.mark.parametrize(("case", "suffix"), ARCHIVE_CASES)
def test_hostile_seed_archive_is_refused(
    case: str, suffix: str, ws_pyro: Pyro, ws_home: Path, canary: Canary, host_dir: Path
) -> None:
    archive = write_archive(host_dir / f"seed{suffix}", hostile_members(case, canary.sentinel))
    before = {w["workspace_id"] for w in ws_pyro.list_workspaces()["workspaces"]}
    message = refused(
        canary,
        ws_pyro.create_workspace,
        environment=ENVIRONMENT,
        seed_path=str(archive),
        match=ARCHIVE_ERRORS[case],
    )
    assert "archive member" in message
    after = {w["workspace_id"] for w in ws_pyro.list_workspaces()["workspaces"]}
    assert after == before, "a refused seed left a workspace behind"
    assert {p.name for p in (ws_home / "workspaces").glob("*")} <= before


@pytest.mark.guest
@pytest.mark.parametrize(("case", "suffix"), ARCHIVE_CASES)
def test_hostile_sync_archive_is_refused_before_anything_is_written(
    case: str, suffix: str, ws_pyro: Pyro, live: str, canary: Canary, host_dir: Path
) -> None:
    archive = write_archive(host_dir / f"sync{suffix}", hostile_members(case, canary.sentinel))
    refused(canary, ws_pyro.push_workspace_sync, live, str(archive), match=ARCHIVE_ERRORS[case])
    assert_unchanged(ws_pyro, live)  # the good members before the bad one were not written


def safe_members() -> list[Any]:
    run = member("sub/run.sh", data=b"echo ran\n")
    run[0].mode = 0o755
    return [
        member("./", tarfile.DIRTYPE),
        member("sub", tarfile.DIRTYPE),
        run,
        member("sub/inner", tarfile.SYMTYPE, link="run.sh"),
        member("top", tarfile.SYMTYPE, link="sub/../sub/run.sh"),
        member("notes.txt", data=b"safe\n"),
    ]


@pytest.mark.guest
@pytest.mark.parametrize("suffix", [".tar", ".tgz"])
def test_safe_archives_are_accepted(
    suffix: str, ws_pyro: Pyro, new_workspace: Any, canary: Canary, host_dir: Path
) -> None:
    """The control for the refusals above: the same builder, nothing hostile, both formats."""
    archive = write_archive(host_dir / f"seed{suffix}", safe_members())
    ws = new_workspace(seed_path=str(archive))
    wid = ws["workspace_id"]
    assert ws["workspace_seed"]["mode"] == "tar_archive"
    ran = ws_pyro.exec_workspace(wid, command="./sub/run.sh && ./top && readlink sub/inner")
    assert ran["stdout"] == "ran\nran\nrun.sh\n"
    assert ws_pyro.diff_workspace(wid)["changed"] is False
    pushed = ws_pyro.push_workspace_sync(wid, str(archive), dest="copy")
    assert pushed["workspace_sync"]["destination"] == "/workspace/copy"
    assert ws_pyro.read_workspace_file(wid, "copy/notes.txt")["content"] == "safe\n"
    canary.check()


@pytest.mark.guest
def test_guest_symlinks_never_reach_host_files(
    ws_pyro: Pyro, ws_home: Path, new_workspace: Any, canary: Canary
) -> None:
    # gVisor's /workspace is a host directory: a symlink made in it must still resolve in
    # the guest's view, never the host's.
    secret = canary.root / "host-only.txt"
    secret.write_text("host secret\n")
    wid = new_workspace()["workspace_id"]
    probe = ws_pyro.exec_workspace(
        wid, command=f"ln -s {secret} l; cat l; ln -s {ws_home} h; ls h/; cat {secret}"
    )
    assert "host secret" not in probe["stdout"]
    assert "state.db" not in probe["stdout"]
    with pytest.raises(ValueError, match="only supports regular files"):
        ws_pyro.read_workspace_file(wid, "l")
    with pytest.raises(ValueError, match="symlinked directory"):
        ws_pyro.list_workspace_files(wid, "h/workspaces")
    canary.check()


def test_seed_directory_with_escaping_entries_is_refused(
    ws_pyro: Pyro, canary: Canary, host_dir: Path
) -> None:
    cases = {
        "absolute symlink": (lambda d: (d / "etc").symlink_to("/etc"), "is absolute"),
        "escaping symlink": (lambda d: (d / "up").symlink_to("../.."), "points outside"),
        "fifo": (lambda d: os.mkfifo(d / TOKEN), "is a FIFO"),
        "socket": (lambda d: bind_socket(d / "sock"), "is a socket"),
    }
    for number, (label, (plant, match)) in enumerate(cases.items()):
        seed = write_tree(host_dir / f"seed{number}", {"ok.txt": "ok\n"})
        plant(seed)
        message = refused(
            canary,
            ws_pyro.create_workspace,
            environment=ENVIRONMENT,
            seed_path=str(seed),
            match=match,
        )
        assert str(seed) in message, f"{label}: the error should name the host path"


def bind_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_seed_path_that_is_no_directory_or_archive(
    ws_pyro: Pyro, canary: Canary, host_dir: Path
) -> None:
    (host_dir / "notes.txt").write_text("x")
    refused(
        canary,
        ws_pyro.create_workspace,
        environment=ENVIRONMENT,
        seed_path=str(host_dir / "notes.txt"),
        match="seed_path must be a directory or a .tar/.tar.gz/.tgz archive",
    )
    refused(
        canary,
        ws_pyro.create_workspace,
        environment=ENVIRONMENT,
        seed_path=str(host_dir / "missing"),
        match="does not exist",
    )
    (host_dir / "broken.tgz").write_bytes(b"not gzip at all")
    refused(
        canary,
        ws_pyro.create_workspace,
        environment=ENVIRONMENT,
        seed_path=str(host_dir / "broken.tgz"),
        match="cannot read archive",
    )


# -- hostile workspace ids -------------------------------------------------------------------------

BAD_IDS = ["../..", "../../etc", "/etc", "workspaces", "0123456789ab", "x" * 300, TOKEN, ""]


@pytest.mark.parametrize("wid", BAD_IDS, ids=lambda v: v[:20] or "empty")
def test_unknown_or_hostile_workspace_ids(
    wid: str, ws_pyro: Pyro, ws_home: Path, canary: Canary, host_dir: Path
) -> None:
    output = str(host_dir / "out")
    where = ws_home / "workspaces" / wid  # what a careless layout would touch
    existed = os.path.lexists(where)
    p = ws_pyro
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (p.status_workspace, {}),
        (p.logs_workspace, {}),
        (p.stop_workspace, {}),
        (p.start_workspace, {}),
        (p.update_workspace, {"name": "x"}),
        (p.exec_workspace, {"command": "true"}),
        (p.push_workspace_sync, {"source_path": str(host_dir)}),
        (p.list_workspace_files, {}),
        (p.read_workspace_file, {"path": "a.txt"}),
        (p.write_workspace_file, {"path": "a.txt", "text": "x"}),
        (p.apply_workspace_patch, {"patch": "--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+x\n"}),
        (p.export_workspace, {"path": "a.txt", "output_path": output}),
        (p.diff_workspace, {}),
        (p.reset_workspace, {}),
        (p.delete_workspace, {}),
    ]
    for call, kwargs in calls:
        refused(canary, call, wid, match="does not exist|workspace_id is required", **kwargs)
    assert not os.path.lexists(output)
    assert os.path.lexists(where) == existed
    if wid:
        error = cli_error("workspace", "status", wid, home=ws_home)
        assert "does not exist" in error


# -- guest paths outside /workspace ---------------------------------------------------------------

OUTSIDE = [
    "..",
    "../x",
    "a/../../b",
    "/etc/passwd",
    "/workspace/../etc/passwd",
    "/",
    "/etc",
    "//etc/passwd",
    "/workspacex/a",
    f"/tmp/{TOKEN}",
]


@pytest.mark.guest
@pytest.mark.parametrize("path", OUTSIDE)
def test_file_ops_refuse_paths_outside_the_workspace(
    path: str, ws_pyro: Pyro, live: str, canary: Canary, host_dir: Path
) -> None:
    rule = "workspace path must stay inside /workspace"
    refused(canary, ws_pyro.read_workspace_file, live, path, match=rule)
    refused(canary, ws_pyro.write_workspace_file, live, path, text=TOKEN, match=rule)
    refused(canary, ws_pyro.list_workspace_files, live, path, match=rule)
    output = host_dir / "out"
    refused(canary, ws_pyro.export_workspace, live, path, output_path=str(output), match=rule)
    assert not output.exists()
    source = write_tree(host_dir / "src", {TOKEN: "x"})
    refused(canary, ws_pyro.push_workspace_sync, live, str(source), dest=path, match=rule)
    assert_unchanged(ws_pyro, live)
    assert ws_pyro.exec_workspace(live, command=f"ls / /etc /tmp | grep -c {TOKEN}")["stdout"] == (
        "0\n"
    )


@pytest.mark.guest
def test_symlinked_parent_inside_the_workspace(
    new_workspace: Any, ws_pyro: Pyro, canary: Canary, host_dir: Path
) -> None:
    wid = new_workspace()["workspace_id"]
    made = ws_pyro.exec_workspace(wid, command="ln -s /etc link && ln -s ../.. up && mkdir real")
    assert made["exit_code"] == 0, made
    through = "refusing to go through a symlinked directory"

    refused(canary, ws_pyro.write_workspace_file, wid, f"link/{TOKEN}", text="x", match=through)
    refused(canary, ws_pyro.write_workspace_file, wid, f"up/tmp/{TOKEN}", text="x", match=through)
    refused(canary, ws_pyro.read_workspace_file, wid, "link/passwd", match=through)
    refused(canary, ws_pyro.read_workspace_file, wid, "up/etc/passwd", match=through)
    refused(canary, ws_pyro.list_workspace_files, wid, "link/ssl", match=through)
    refused(
        canary,
        ws_pyro.export_workspace,
        wid,
        "link/passwd",
        output_path=str(host_dir / "passwd"),
        match=through,
    )
    # The symlink itself is listed, never followed; writing "to" it never replaces it.
    listed = ws_pyro.list_workspace_files(wid, "link/")["entries"]
    assert listed == [
        {
            "path": "/workspace/link",
            "artifact_type": "symlink",
            "size_bytes": 0,
            "link_target": "/etc",
        }
    ]
    refused(canary, ws_pyro.write_workspace_file, wid, "link", text="x", match="symlink")
    refused(canary, ws_pyro.read_workspace_file, wid, "link", match="only supports regular files")
    # An export of the absolute symlink itself is refused (symlinks must stay inside).
    refused(
        canary,
        ws_pyro.export_workspace,
        wid,
        "link",
        output_path=str(host_dir / "link"),
        match="is absolute",
    )
    assert not os.path.lexists(host_dir / "link")

    # Patch apply (modify, and add) through the symlinked parent.
    patch = f"--- a/link/hostname\n+++ b/link/hostname\n@@ -1 +1 @@\n-pyro\n+{TOKEN}\n"
    refused(canary, ws_pyro.apply_workspace_patch, wid, patch=patch, match=through)
    patch = f"--- /dev/null\n+++ b/link/{TOKEN}\n@@ -0,0 +1 @@\n+x\n"
    refused(canary, ws_pyro.apply_workspace_patch, wid, patch=patch, match=through)

    # Sync push meets the guest's symlink: as a member's parent and as the destination.
    archive = write_archive(host_dir / "push.tar", [member(f"link/{TOKEN}")])
    refused(canary, ws_pyro.push_workspace_sync, wid, str(archive), match=through)
    plain = write_archive(host_dir / "plain.tar", [member(TOKEN)])
    refused(canary, ws_pyro.push_workspace_sync, wid, str(plain), dest="link", match=through)
    refused(canary, ws_pyro.push_workspace_sync, wid, str(plain), dest="up/tmp", match=through)

    probe = ws_pyro.exec_workspace(
        wid, command=f"ls -a / /etc /tmp /workspace/real | grep -c {TOKEN}; readlink link"
    )
    assert probe["stdout"] == "0\n/etc\n", "something was written through a symlink"


@pytest.mark.guest
def test_diff_still_works_with_an_absolute_symlink_in_the_workspace(
    new_workspace: Any, ws_pyro: Pyro
) -> None:
    wid = new_workspace()["workspace_id"]
    ws_pyro.exec_workspace(wid, command="mkdir -p venv/bin && ln -s /usr/bin/python3 venv/bin/py")
    diff = ws_pyro.diff_workspace(wid)
    assert diff["changed"] is True
    assert ("venv/bin/py", "added") in [(e["path"], e["status"]) for e in diff["entries"]]


@pytest.mark.guest
def test_guest_made_special_files_are_named_clearly(ws_pyro: Pyro, new_workspace: Any) -> None:
    wid = new_workspace()["workspace_id"]
    assert ws_pyro.exec_workspace(wid, command="mkfifo pipe && test -p pipe")["exit_code"] == 0
    with pytest.raises(ValueError, match="refusing to replace") as info:
        ws_pyro.write_workspace_file(wid, "pipe", text="x")
    assert " a other " not in str(info.value)
    assert "FIFO" in str(info.value) or "special file" in str(info.value)
    listed = ws_pyro.list_workspace_files(wid)
    assert {e["artifact_type"] for e in listed["entries"]} <= {"file", "directory", "symlink"}
    assert "pipe" not in [e["path"].rsplit("/", 1)[-1] for e in listed["entries"]]


# -- export to host paths that already exist ------------------------------------------------------


@pytest.mark.guest
def test_export_never_replaces_an_existing_host_path(
    ws_pyro: Pyro, live: str, canary: Canary, host_dir: Path
) -> None:
    existing_file = host_dir / "file.txt"
    existing_file.write_text("precious\n")
    existing_dir = write_tree(host_dir / "dir", {"inside.txt": "precious\n"})
    dangling = host_dir / "dangling"
    dangling.symlink_to(canary.sentinel / TOKEN)
    to_sentinel = host_dir / "to-sentinel"
    to_sentinel.symlink_to(canary.sentinel)

    for target in (existing_file, existing_dir, dangling, to_sentinel):
        for path in ("a.txt", "d", "/workspace"):
            refused(
                canary,
                ws_pyro.export_workspace,
                live,
                path,
                output_path=str(target),
                match="output_path already exists",
            )
    assert existing_file.read_text() == "precious\n"
    assert [p.name for p in existing_dir.iterdir()] == ["inside.txt"]
    assert os.readlink(dangling) == str(canary.sentinel / TOKEN)
    assert sorted(p.name for p in host_dir.iterdir()) == [
        "dangling",
        "dir",
        "file.txt",
        "to-sentinel",
    ], "an export left a temporary file behind"


# -- size limits ----------------------------------------------------------------------------------

MIB = 1024 * 1024


@pytest.mark.guest
def test_file_size_limits(ws_pyro: Pyro, live: str, canary: Canary) -> None:
    too_big = "bytes long; the limit is 1048576 bytes"
    refused(
        canary, ws_pyro.write_workspace_file, live, "big.txt", text="x" * (MIB + 1), match=too_big
    )
    # The limit is on UTF-8 bytes, not characters.
    refused(
        canary,
        ws_pyro.write_workspace_file,
        live,
        "big.txt",
        text="é" * (MIB // 2 + 1),
        match=too_big,
    )
    for bad in (MIB + 1, 0, -1):
        refused(
            canary,
            ws_pyro.read_workspace_file,
            live,
            "a.txt",
            max_bytes=bad,
            match="max_bytes must be between 1 and 1048576",
        )
    refused(
        canary, ws_pyro.apply_workspace_patch, live, patch="x" * (MIB + 1), match="1 MiB|1048576"
    )
    assert_unchanged(ws_pyro, live)


# -- rejected patches leave the workspace unchanged ----------------------------------------------

A_FIX = "@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
PATCHES = {
    "mode lines": (
        "diff --git a/a.txt b/a.txt\nold mode 100644\nnew mode 100755\n"
        f"--- a/a.txt\n+++ b/a.txt\n{A_FIX}",
        "file mode lines are not supported",
    ),
    "new file mode": (
        "diff --git a/n.txt b/n.txt\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+new\n",
        "file mode lines are not supported",
    ),
    "rename": (
        "diff --git a/a.txt b/c.txt\nsimilarity index 100%\nrename from a.txt\nrename to c.txt\n",
        "renames and copies are not supported",
    ),
    "differing paths": (f"--- a/a.txt\n+++ b/c.txt\n{A_FIX}", "old and new paths differ"),
    "git binary": (
        "diff --git a/a.txt b/a.txt\nindex 5626abf..f719efd 100644\nGIT binary patch\n"
        "literal 1\nIcmZo*000000\n\nliteral 4\nLcmZo*000000\n\n",
        "binary patches are not supported",
    ),
    "binary files differ": (
        "diff --git a/a.txt b/a.txt\nBinary files a/a.txt and b/a.txt differ\n",
        "binary patches are not supported",
    ),
    "missing +++": (f"--- a/a.txt\n{A_FIX}", r"missing '\+\+\+' header"),
    "no hunks": ("--- a/a.txt\n+++ b/a.txt\n", "has no hunks"),
    "bad counts": (
        "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n",
        "header says 3 old and 3 new lines",
    ),
    "malformed hunk header": (
        "--- a/a.txt\n+++ b/a.txt\n@@ -x +1 @@\n-one\n+ONE\n",
        "malformed hunk header",
    ),
    "stray line": (f"--- a/a.txt\n+++ b/a.txt\n{A_FIX}garbage\n", "unexpected line 'garbage'"),
    "add existing": ("--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+x\n", "already exists"),
    "modify missing": (
        "--- a/missing.txt\n+++ b/missing.txt\n@@ -1 +1 @@\n-x\n+y\n",
        "cannot modify the file: it does not exist",
    ),
    "delete missing": (
        "--- a/missing.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
        "cannot delete the file: it does not exist",
    ),
    "context mismatch": (
        "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-zwei\n+TWO\n three\n",
        "does not apply: line 2",
    ),
    "directory target": (
        "--- a/d\n+++ b/d\n@@ -1 +1 @@\n-x\n+y\n",
        "only supports regular files",
    ),
    "escaping path": (
        "--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-root\n+owned\n",
        "must stay inside /workspace",
    ),
    "absolute path outside": (
        "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-root\n+owned\n",
        "must stay inside /workspace",
    ),
    "duplicate entries": (
        f"--- a/a.txt\n+++ b/a.txt\n{A_FIX}--- a/a.txt\n+++ b/a.txt\n{A_FIX}",
        "more than one entry",
    ),
    "second file fails (preflight)": (
        f"--- a/a.txt\n+++ b/a.txt\n{A_FIX}--- a/b.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-wasp\n+bee\n",
        "b.txt: hunk 1 .* does not apply",
    ),
    "empty": ("", "patch must not be empty"),
}


@pytest.mark.guest
@pytest.mark.parametrize("name", list(PATCHES))
def test_rejected_patch_leaves_the_workspace_unchanged(
    name: str, ws_pyro: Pyro, live: str, canary: Canary
) -> None:
    text, match = PATCHES[name]
    before = ws_pyro.status_workspace(live)["last_activity_at"]
    refused(canary, ws_pyro.apply_workspace_patch, live, patch=text, match=match)
    assert_unchanged(ws_pyro, live)
    assert ws_pyro.list_workspace_files(live, recursive=True)["entries"] == [
        {"path": f"/workspace/{p}", "artifact_type": t, "size_bytes": s, "link_target": None}
        for p, t, s in (("a.txt", "file", 14), ("b.txt", "file", 4), ("d", "directory", 0))
    ] + [
        {
            "path": "/workspace/d/keep.txt",
            "artifact_type": "file",
            "size_bytes": 5,
            "link_target": None,
        }
    ]
    assert ws_pyro.status_workspace(live)["last_activity_at"] == before


# -- the same refusals on the CLI and over MCP: one clear error, no traceback ---------------------


@pytest.mark.guest
def test_cli_and_mcp_refuse_with_one_clear_error(
    ws_home: Path, live: str, canary: Canary, host_dir: Path
) -> None:
    archive = write_archive(host_dir / "seed.tgz", hostile_members("dotdot", canary.sentinel))
    existing = host_dir / "exists.txt"
    existing.write_text("precious\n")

    errors = [
        cli_error("workspace", "create", "--seed-path", str(archive), home=ws_home),
        cli_error("workspace", "file", "read", live, "/etc/passwd", home=ws_home),
        cli_error("workspace", "file", "write", live, "../x", "--text", TOKEN, home=ws_home),
        cli_error("workspace", "export", live, "a.txt", "--output", str(existing), home=ws_home),
        cli_error("workspace", "sync", "push", live, str(archive), home=ws_home),
    ]
    with McpClient(ws_home, roots=[host_dir]) as mcp:
        errors += [
            mcp.error("workspace_create", environment=ENVIRONMENT, seed_path=str(archive)),
            mcp.error("workspace_file_read", workspace_id=live, path="/etc/passwd"),
            mcp.error("workspace_file_write", workspace_id=live, path="../x", text=TOKEN),
            mcp.error(
                "workspace_export", workspace_id=live, path="a.txt", output_path=str(existing)
            ),
            mcp.error("workspace_sync_push", workspace_id=live, source_path=str(archive)),
            mcp.error("workspace_file_read", workspace_id=live, path="a.txt", max_bytes=MIB + 1),
        ]
    canary.check()
    expected = [
        "'..' segments are not allowed",
        "must stay inside /workspace",
        "must stay inside /workspace",
        "output_path already exists",
        "'..' segments are not allowed",
    ]
    expected += [*expected, "max_bytes must be between 1 and 1048576 (got 1048577)"]
    for message, fragment in zip(errors, expected, strict=True):
        assert fragment in message
        assert "Traceback" not in message
    assert existing.read_text() == "precious\n"
    assert not stat.S_ISLNK(existing.lstat().st_mode)


def test_file_names_that_are_not_utf8_list_on_every_surface(
    ws_pyro: Pyro, new_workspace: Any, ws_home: Path
) -> None:
    """A guest name with a byte that is not UTF-8 shows as \\xHH in JSON and MCP (it made the
    whole MCP listing fail), and stays Python's surrogate in the SDK."""
    wid = new_workspace(seed_path=None)["workspace_id"]
    made = ws_pyro.exec_workspace(wid, command="touch \"$(printf 'bad\\377name')\" ok.txt")
    assert made["exit_code"] == 0, made["stderr"]
    sdk = [e["path"] for e in ws_pyro.list_workspace_files(wid)["entries"]]
    assert sdk == ["/workspace/bad\udcffname", "/workspace/ok.txt"]
    shown = ["/workspace/bad\\xffname", "/workspace/ok.txt"]
    listing = cli_json("workspace", "file", "list", wid, home=ws_home)
    assert [e["path"] for e in listing["entries"]] == shown
    with McpClient(ws_home) as mcp:
        result = mcp.ok("workspace_file_list", workspace_id=wid)
    assert [e["path"] for e in result["entries"]] == shown
    for helper in ("0", "1"):  # human output prints the name's bytes, as ls does
        human = subprocess.run(
            [*pyro_argv(), "workspace", "file", "list", wid],
            env={**os.environ, "PYRO_HOME": str(ws_home), "PYRO_CLI_HELPER": helper},
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert human.returncode == 0, human.stderr
        assert b"/workspace/bad\xffname\n" in human.stdout
    stop_cli_helpers(ws_home)  # the first command through PYRO_CLI_HELPER=1 started one
