"""Rich rendering of pipeline progress."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from serendip.pipeline import Progress as PipelineProgress


class RichProgress(PipelineProgress):
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._task: int | None = None

    def __enter__(self) -> RichProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        self._bar.__exit__(*exc)

    def _finish(self) -> None:
        if self._task is not None:
            task = self._bar.tasks[self._task]
            self._bar.update(
                self._task,
                completed=task.total if task.total is not None else 1,
                total=task.total if task.total is not None else 1,
            )

    def stage(self, name: str, total: int | None = None) -> None:
        self._finish()
        self._task = self._bar.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)

    def note(self, message: str) -> None:
        self._bar.console.print(f"  [dim]{message}[/dim]")
