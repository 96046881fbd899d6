"""The host's service records (workspaces/service_records.py): what `start` starts again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyro_mcp.workspaces.service_records import ServiceRecords


def _start(name: str, command: str = "sleep 9") -> dict[str, Any]:
    return {"name": name, "command": command, "published_ports": [{"guest_port": 80}]}


def test_started_services_are_kept_until_stopped_or_cleared(tmp_path: Path) -> None:
    records = ServiceRecords(tmp_path / "services.json")
    records.after("service_start", _start("db"), {"service_name": "db"})
    records.after("service_start", _start("web"), {"service_name": "web"})
    records.after("service_start", _start("db", "sleep 10"), {"service_name": "db"})
    assert list(records.load()) == ["web", "db"]  # the start order, the latest arguments
    assert records.load()["db"]["command"] == "sleep 10"
    records.after("service_stop", {"name": "web"}, {"service_name": "web"})
    assert list(ServiceRecords(tmp_path / "services.json").load()) == ["db"]  # on disk
    records.clear()
    assert records.load() == {}


def test_restart_marks_each_outcome_and_reports_errors(tmp_path: Path) -> None:
    records = ServiceRecords(tmp_path / "services.json")
    for name in ("ok", "unready", "broken"):
        records.after("service_start", _start(name), {"service_name": name})
    seen: list[dict[str, Any]] = []

    def start(args: dict[str, Any]) -> dict[str, Any]:
        seen.append(args)
        if args["name"] == "broken":
            raise RuntimeError("cwd is gone")
        return {"state": "running" if args["name"] == "ok" else "failed"}

    errors = records.restart(start)
    assert [a["name"] for a in seen] == ["ok", "unready", "broken"]
    assert seen[0]["published_ports"] == [{"guest_port": 80}]
    assert errors == ["service 'broken' did not come back: cwd is gone"]
    listed = records.after(
        "service_list",
        {},
        {"services": [{"service_name": n} for n in ("ok", "unready", "other")]},
    )
    assert [s.get("restarted") for s in listed["services"]] == [True, False, None]
    # a new start by the user is a plain start again
    again = records.after("service_start", _start("ok"), {"service_name": "ok"})
    assert "restarted" not in again


def test_a_damaged_file_means_no_records(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_text("[not json")
    assert ServiceRecords(path).load() == {}
    path.write_text("[1, 2]")
    assert ServiceRecords(path).load() == {}


def test_restarts_share_one_readiness_budget(tmp_path: Path) -> None:
    records = ServiceRecords(tmp_path / "services.json")
    records.after("service_start", {**_start("a"), "ready_timeout_seconds": 5}, {})
    records.after("service_start", {**_start("b"), "ready_timeout_seconds": 600}, {})
    timeouts: list[float] = []

    def start(args: dict[str, Any]) -> dict[str, Any]:
        timeouts.append(args["ready_timeout_seconds"])
        return {"state": "running"}

    records.restart(start, budget=60)
    assert timeouts[0] == 5 and 59 < timeouts[1] <= 60
