"""Host-side filling of a gVisor /workspace directory (create and reset), with hostile input.

No sandbox: this is the host code path that runs before a sandbox exists.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pyro_mcp.errors import ValidationError
from pyro_mcp.workspaces.layout import WorkspaceLayout
from pyro_mcp.workspaces.store import Store
from test_archives import d, f, ln, make_tar


@pytest.fixture
def layout(tmp_path: Path) -> WorkspaceLayout:
    layout = WorkspaceLayout(tmp_path / "home", "ws1")
    layout.create()
    layout.fresh_volume(image=False)
    return layout


def test_unpacks_files_dirs_links_and_modes(layout: WorkspaceLayout) -> None:
    tar = make_tar(d("src"), f("src/run.sh", b"echo hi\n", 0o755), ln("link", "src/run.sh"))
    result = layout.unpack_into_volume(tar)
    assert (result["entry_count"], result["destination"]) == (3, "/workspace")
    script = layout.volume_dir / "src" / "run.sh"
    assert script.read_bytes() == b"echo hi\n"
    assert script.stat().st_mode & 0o777 == 0o755
    assert (layout.volume_dir / "link").readlink() == Path("src/run.sh")


@pytest.mark.parametrize(
    "members",
    [
        [f("../escape")],
        [f("/etc/escape")],
        [ln("out", "/etc"), f("out/escape")],
        [ln("out", "../../.."), f("out/escape")],
        # A chain of links that only escapes when followed (the guest's own check alone
        # judges each target by its text).
        [d("p"), d("p/q"), ln("p/q/s", "../.."), ln("p/q/t", "s/../.."), f("p/q/t/escape")],
    ],
    ids=["dotdot", "absolute", "abs-link-parent", "rel-link-parent", "link-chain"],
)
def test_hostile_archives_are_refused_and_the_host_untouched(
    layout: WorkspaceLayout, tmp_path: Path, members: list[object]
) -> None:
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValidationError) as error:
        layout.unpack_into_volume(make_tar(*members))  # type: ignore[arg-type]
    assert str(layout.root) not in str(error.value), "errors must not name host paths"
    assert not list(tmp_path.rglob("escape"))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_replace_volume_moves_the_old_aside_and_sweeps_leftovers(
    layout: WorkspaceLayout,
) -> None:
    (layout.volume_dir / "old.txt").write_text("old\n")
    leftover = layout.root / "volume.old-deadbeef"
    leftover.mkdir()
    aside = layout.replace_volume()
    assert (aside / "old.txt").read_text() == "old\n"
    assert list(layout.volume_dir.iterdir()) == []
    assert not leftover.exists()


def test_a_failed_transaction_leaves_the_kept_connection_usable(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as db:
        db.execute("INSERT INTO expired (workspace_id, expired_at, ttl_seconds) VALUES ('a', 1, 1)")
        db.execute("INSERT INTO expired (workspace_id, expired_at, ttl_seconds) VALUES ('a', 1, 1)")
    with store.connect() as db:
        assert not db.in_transaction
    store.mark_expired("b", 60, 2.0)  # writes again on the same connection
    assert store.expired("a") is None
    assert store.expired("b") == {"workspace_id": "b", "expired_at": 2.0, "ttl_seconds": 60}
    other = Store(tmp_path / "state.db")  # another client is not locked out
    other.mark_expired("c", 60, 3.0)


def test_a_seed_equal_to_the_baseline_is_left_as_a_link(layout: WorkspaceLayout) -> None:
    seed = make_tar(f("a.txt", b"a\n"))
    layout.baseline.write_bytes(seed)
    layout.leave_seed(seed)
    assert layout.pending_seed.read_bytes() == seed
    assert layout.pending_seed.stat().st_ino == layout.baseline.stat().st_ino  # not rewritten
    layout.pending_seed.unlink()  # as the supervisor does once it is unpacked
    assert layout.baseline.read_bytes() == seed

    other = make_tar(f("b.txt", b"b\n"))
    layout.leave_seed(other)  # another seed is written whole, the baseline untouched
    assert layout.pending_seed.read_bytes() == other
    assert layout.pending_seed.stat().st_ino != layout.baseline.stat().st_ino
    assert layout.baseline.read_bytes() == seed
