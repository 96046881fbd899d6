"""Run the use-case smoke scenarios: ``python -m pyro_mcp.smoke.runner --scenario all``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from ..api import Pyro
from ..errors import PyroError
from .scenarios import SCENARIOS, SmokeFailure, Story


def run_scenario(
    pyro: Pyro, name: str, environment: str, broken: bool = False
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"pyro-smoke-{name}-") as tmp:
        story = Story(pyro, name, environment, Path(tmp))
        with story.workspaces():
            return SCENARIOS[name](story, broken)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="workspace_use_case_smoke", description="Guest-backed smoke packs for the use cases."
    )
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument(
        "--environment", default=os.environ.get("USE_CASE_ENVIRONMENT", "debian:12")
    )
    parser.add_argument(
        "--break-fixture",
        action="store_true",
        help="Plant the deliberate defect: the story must fail, clearly.",
    )
    opts = parser.parse_args(argv)
    names = list(SCENARIOS) if opts.scenario == "all" else [opts.scenario]
    failures = 0
    with Pyro() as pyro:
        for name in names:
            started = time.monotonic()
            try:
                result = run_scenario(pyro, name, opts.environment, opts.break_fixture)
            except (SmokeFailure, PyroError) as exc:
                failures += 1
                print(
                    f"[smoke] {name}: FAIL after {time.monotonic() - started:.1f}s: {exc}",
                    file=sys.stderr,
                )
                continue
            print(f"[smoke] {name}: PASS in {time.monotonic() - started:.1f}s {result}")
    passed = len(names) - failures
    print(f"smoke: {passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
