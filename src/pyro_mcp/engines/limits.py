"""The resource limits of one sandbox, from the same parameters on every engine.

A sandbox gets ``vcpu_count`` CPUs, ``mem_mib`` of memory and a process limit derived from
its memory (``process_limit``). Each engine enforces them its own way, and the guest agent
enforces what an engine cannot do exactly (``guest_limits``):

- QEMU: the VM's CPUs and RAM are the limits; the guest kernel's pids cgroup caps processes.
- gVisor: runsc puts the sandbox in a host cgroup (memory, pids, and a CPU quota where it
  bounds something: ``host_cpu_quota``) sized with room for the engine's own use (a
  backstop that protects the host: crossing it ends the sandbox),
  and the agent keeps the guest inside the real limits first (a pids cgroup, and a watchdog
  that kills the largest offender when memory or processes go over), so exceeding a limit
  hurts only the guest.
"""

from __future__ import annotations

from typing import Any

# What gVisor itself (sentry, gofer, systrap stubs) may use beyond the guest's memory.
ENGINE_MEMORY_OVERHEAD_MIB = 256
# CPUs gVisor itself (sentry, gofer, systrap stubs) may use beyond the guest's vCPUs, as a
# VM's emulator threads run beside its vCPUs: with a quota of only the vCPUs the sandbox was
# throttled in 19 of 22 periods of back-to-back execs, and a `true` took 27 ms in the guest
# instead of 16.
ENGINE_CPUS = 1
# Threads the agent itself may run beside the guest's processes (they share the pids cgroup).
AGENT_TASKS = 64


def process_limit(mem_mib: int) -> int:
    """Processes (threads included) a sandbox may run: a quarter of its MiB, 128 to 4096."""
    return max(128, min(4096, mem_mib // 4))


def tmpfs_size_mib(mem_mib: int) -> int:
    """Each of the guest's tmpfs mounts may hold half of its memory (as Linux defaults to)."""
    return max(64, mem_mib // 2)


def host_memory_bytes(mem_mib: int) -> int:
    """The gVisor host cgroup's memory limit: the guest's memory plus the engine's own."""
    return (mem_mib + ENGINE_MEMORY_OVERHEAD_MIB) * 1024 * 1024


def host_pids_limit(mem_mib: int) -> int:
    """The gVisor host cgroup's task limit: each guest process costs the engine a stub
    process and threads on the host, and the sentry runs its own threads."""
    return 4 * process_limit(mem_mib) + 256


def host_cpus(vcpu_count: int) -> int:
    """The gVisor host cgroup's CPU quota, in CPUs: the guest's vCPUs plus the engine's."""
    return vcpu_count + ENGINE_CPUS


def host_cpu_quota(vcpu_count: int, cpus_on_host: int) -> int | None:
    """The CPU quota (in CPUs) a gVisor sandbox is put under, or None where it would bound
    nothing: a quota of every CPU the host has. Being in a CPU cgroup at all costs each exec
    a few milliseconds of wake-up latency (25 sandboxes each, alternating, back-to-back
    `true` on a 2-CPU host: median 19.4 ms in one, 13.5 ms without, 15.7 ms for 3.6.0)."""
    quota = host_cpus(vcpu_count)
    return quota if quota < cpus_on_host else None


def guest_limits(mem_mib: int, watchdog: bool) -> dict[str, Any]:
    """What the agent enforces inside the guest (sent with its first ``hello``)."""
    return {
        "processes": process_limit(mem_mib),
        "agent_tasks": AGENT_TASKS,
        "memory_mib": mem_mib,
        "watchdog": watchdog,
    }
