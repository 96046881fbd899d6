"""`make bench`, workspace figures (issue: persistent workspaces), each beside the bare
engine measured in the same run:

- warm exec round trip through the SDK (`Pyro.exec_workspace`, history recorded) against
  `runsc exec` into a sleeping bare container. The target applies to the paced figure: one
  call every 50 ms, as from a client that does anything at all between calls, which is
  the round trip a caller waits for. Two more figures are shown for information:
  back-to-back calls (each sent the instant the last returned; the agent starts no shell
  ahead between such calls, so this measures how fast shells can be started in a row)
  and calls after half a second of idle (an agent's usual pace);
- create with a 10 MB seed against a bare `runsc run` of `true` plus copying the same seed
  into a fresh directory (what any sandbox start with that seed must at least do);
- reset to the baseline against the same bare boot plus copy.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench_support import (
    BareRunsc,
    Stats,
    alternate_blocks,
    run_checked,
    sweep_runsc_root,
    timed,
)

ENVIRONMENT = "debian:12"

EXEC_TARGET_MS = 15.0
CREATE_TARGET_S = 1.0
RESET_TARGET_S = 0.5
SEED_BYTES = 10 * 1024 * 1024
IDLE_RUNS = 10
IDLE_SECONDS = 0.5
PACE_SECONDS = 0.05


def make_seed(root: Path) -> Path:
    seed = root / "seed-10mb"
    (seed / "src").mkdir(parents=True, exist_ok=True)
    (seed / "src" / "blob.bin").write_bytes(os.urandom(SEED_BYTES - 64 * 1024))
    for index in range(64):
        (seed / "src" / f"file{index:02d}.txt").write_text("x" * 1023 + "\n")
    return seed


def exec_true(pyro: Any, wid: str) -> None:
    result = pyro.exec_workspace(wid, "true")
    if (result["exit_code"], result["stdout"], result["stderr"]) != (0, "", ""):
        raise RuntimeError(f"bench: `true` in the workspace failed: {result}")


def check_seeded(pyro: Any, wid: str, after: str) -> None:
    """The timed create or reset really left the seed in /workspace."""
    blob = SEED_BYTES - 64 * 1024
    result = pyro.exec_workspace(wid, "wc -c < src/blob.bin; ls src | wc -l")
    if result["stdout"].split() != [str(blob), "65"]:
        raise RuntimeError(f"bench: the seed is not in /workspace after {after}: {result}")


def paced(call: Any) -> float:
    """Seconds ``call`` takes, after a pause of PACE_SECONDS."""
    time.sleep(PACE_SECONDS)
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def section_workspace(bench: Any) -> None:
    runs = bench.args.exec_runs
    print(
        f"\n== workspaces on gVisor: warm exec ({runs} calls), create with a 10 MB seed, reset =="
    )
    seed = make_seed(bench.workdir)
    bare = BareRunsc(bench.workdir / "bare-ws", bench.env, bench.agent_dir)
    exec_s: list[float] = []
    bare_exec_s: list[float] = []
    paced_s: list[float] = []
    bare_paced_s: list[float] = []
    idle_s: list[float] = []
    create_s: list[float] = []
    reset_s: list[float] = []
    bare_boot_s: list[float] = []
    try:
        with bench.pyro("gvisor") as pyro:
            for _ in range(3):
                elapsed, ws = timed(
                    lambda: pyro.create_workspace(environment=ENVIRONMENT, seed_path=str(seed))
                )
                create_s.append(elapsed)
                wid = ws["workspace_id"]
                try:
                    check_seeded(pyro, wid, "create")
                    if pyro.exec_workspace(wid, "rm -r src")["exit_code"] != 0:
                        raise RuntimeError("bench: could not remove the seed before reset")
                    reset_s.append(timed(lambda wid=wid: pyro.reset_workspace(wid))[0])
                    check_seeded(pyro, wid, "reset")
                finally:
                    pyro.delete_workspace(wid)
                target = bench.workdir / f"copy-{uuid.uuid4().hex[:6]}"
                copy = timed(lambda target=target: shutil.copytree(seed, target))[0]
                shutil.rmtree(target)
                # mounting the agent, as a workspace sandbox does
                bare_boot_s.append(bare.one_shot(["/bin/true"], agent=True) + copy)
            ws = pyro.create_workspace(environment=ENVIRONMENT)
            wid = ws["workspace_id"]
            try:
                with bare.sleeping() as container:
                    bare_cmd = bare.exec_command(container, "/bin/true")
                    for _ in range(3):
                        exec_true(pyro, wid)
                    paced_s, bare_paced_s = alternate_blocks(
                        lambda: paced(lambda: exec_true(pyro, wid)),
                        lambda: paced(lambda: run_checked(bare_cmd, what="runsc exec")),
                        runs,
                        settle=2,
                    )
                    exec_s, bare_exec_s = alternate_blocks(
                        lambda: timed(lambda: exec_true(pyro, wid))[0],
                        lambda: run_checked(bare_cmd, what="runsc exec"),
                        runs,
                    )
                    for _ in range(IDLE_RUNS):  # what a chat agent's occasional call sees
                        time.sleep(IDLE_SECONDS)
                        idle_s.append(timed(lambda: exec_true(pyro, wid))[0])
            finally:
                pyro.delete_workspace(wid)
    finally:
        sweep_runsc_root(bare.state)
    pa, bpa = Stats(paced_s), Stats(bare_paced_s)
    print(
        f"workspace warm exec (SDK exec_workspace, a call every {PACE_SECONDS * 1000:.0f} ms): "
        f"median {pa.median * 1000:.1f} ms, p90 {pa.p90 * 1000:.1f} ms  bare runsc exec: "
        f"{bpa.median * 1000:.1f} ms  ratio {pa.median / bpa.median:.2f}  (target <= "
        f"{EXEC_TARGET_MS:.0f} ms: {verdict(pa.median * 1000 <= EXEC_TARGET_MS)})"
    )
    ex, bex = Stats(exec_s), Stats(bare_exec_s)
    print(
        f"  back-to-back (for information: no shell is started ahead between such calls): "
        f"median {ex.median * 1000:.1f} ms, p90 {ex.p90 * 1000:.1f} ms  bare runsc exec: "
        f"{bex.median * 1000:.1f} ms  ratio {ex.median / bex.median:.2f}"
    )
    idle = Stats(idle_s)
    print(
        f"  after {IDLE_SECONDS} s idle (for information: an agent's usual pace; an idle "
        f"sandbox's threads sleep, and wake slower on a nested-virtualization host): "
        f"{idle.millis()}"
    )
    boot = statistics.median(bare_boot_s)
    for label, samples, target in (
        ("create with 10 MB seed", create_s, CREATE_TARGET_S),
        ("reset to baseline (10 MB)", reset_s, RESET_TARGET_S),
    ):
        st = Stats(samples)
        print(
            f"workspace {label}: median {st.median:.2f} s (min {st.low:.2f}, max "
            f"{st.high:.2f})  bare runsc run + copy seed: {boot:.2f} s  ratio "
            f"{st.median / boot:.2f}  (target <= {target} s: {verdict(st.median <= target)})"
        )
    print(
        f"  bare = `runsc run /bin/true` (agent mounted) + copying the seed to a fresh directory: "
        f"{Stats(bare_boot_s).seconds()}"
    )
