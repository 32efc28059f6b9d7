"""What a process in a container ended with: :class:`ProcessResult` (a plain value).

It sits at the bottom of the package (next to :mod:`.errors`) because both the
container machinery and the exceptions carry it: :class:`~.errors.ContainerExitError`
holds the result of the process that failed, and a
:class:`~.errors.SolveError` the results of its ``OnError`` commands.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OUTPUT_TAIL_BYTES", "ProcessResult"]

#: How much of the end of a process's output an exception message shows.
OUTPUT_TAIL_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """A process that ran in a container on the build worker.

    ``args`` is its command line, ``exit_code`` its exit status (``128 + n`` when
    signal ``n`` killed it; ``255`` when the daemon could not tell), ``stdout`` and
    ``stderr`` what it wrote, when they were captured (empty when they went
    elsewhere; with a TTY everything is on ``stdout``); ``tail`` the last 4 KiB of
    all its output wherever it went; ``error`` what the daemon said about a failure
    (``"exit code: 3"``, or why the process could not start).
    """

    args: tuple[str, ...]
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    tail: bytes = b""
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the process exited with status 0."""
        return self.exit_code == 0

    def output_tail(self, limit: int = OUTPUT_TAIL_BYTES) -> str:
        """The last ``limit`` bytes of the output, decoded for a message."""
        if self.tail:
            return self.tail.rstrip(b"\n")[-limit:].decode(errors="replace")
        parts = [p for p in (self.stdout, self.stderr) if p]
        data = b"\n".join(p.rstrip(b"\n") for p in parts)
        return data[-limit:].decode(errors="replace")
