"""Recorded Status streams (tests/progress_streams/*.jsonl.gz) for the progress tests."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

from llblib_async.progress import StatusUpdate
from llblib_async.progress.rawjson import read_rawjson

STREAMS = Path(__file__).resolve().parent / "progress_streams"
#: one request per stream: Go's progressui sees the same thing as our printer
SINGLE = ("local_build", "failure", "biglog", "clipped", "grouped")
#: several concurrent requests in one session
MULTI = ("shared", "busy")


def stream(name: str, *, labels: bool = True) -> list[StatusUpdate]:
    with gzip.open(STREAMS / f"{name}.jsonl.gz", "rt") as f:
        updates = list(read_rawjson(f))
    if not labels:
        updates = [dataclasses.replace(u, request="") for u in updates]
    return updates


def raw_lines(name: str) -> list[str]:
    with gzip.open(STREAMS / f"{name}.jsonl.gz", "rt") as f:
        return [line for line in f.read().splitlines() if line.strip()]
