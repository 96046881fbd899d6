"""The environment build's progress bar on a terminal (rich: imported only when a build
starts on a TTY, so the CLI's usual start stays fast; cli/output.py BuildProgress)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# The build's phases in order (environments/build.py build_environment reports them).
STEPS = ("rootfs", "image", "kernel", "initramfs", "manifest")
DETAIL_WIDTH = 48


def _short(detail: str) -> str:
    detail = " ".join(detail.split())
    return detail if len(detail) <= DETAIL_WIDTH else detail[: DETAIL_WIDTH - 1] + "…"


class BuildBar:
    """One bar over the build's phases; the latest detail line (a package being unpacked,
    a download) beside it. Lines that are not phases print above the bar."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[phase]:<9}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TextColumn("{task.description}", markup=False),
            console=console or Console(stderr=True),
        )
        self.task = self.progress.add_task("", total=len(STEPS), phase="build")
        self.progress.start()
        self.running = True

    def update(self, phase: str, detail: str) -> None:
        if phase == "detail":
            self.progress.update(self.task, description=_short(detail))
        elif phase in STEPS:
            done = STEPS.index(phase)
            self.progress.update(self.task, completed=done, phase=phase, description=_short(detail))
        elif phase == "ready":
            self.progress.update(self.task, completed=len(STEPS), phase=phase, description="")
            self.close()
            self.print(phase, detail)
        else:
            self.print(phase, detail)

    def print(self, phase: str, detail: str) -> None:
        self.progress.console.print(f"[pull] phase={phase} {detail}", markup=False, highlight=False)

    def close(self) -> None:
        if self.running:
            self.running = False
            self.progress.stop()
