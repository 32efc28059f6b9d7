"""Re-make docs/images/progress-tui.svg: the tty display in the middle of the recorded busy build.

.venv/bin/python tests/progress_streams/screenshot.py
"""

from __future__ import annotations

import asyncio
import gzip
import sys
from pathlib import Path

from llblib_async.progress import ProgressModel
from llblib_async.progress.rawjson import read_rawjson
from llblib_async.progress.tui import ProgressApp

HERE = Path(__file__).resolve().parent
OUT = HERE.parent.parent / "docs" / "images" / "progress-tui.svg"


async def main() -> int:
    model = ProgressModel()
    with gzip.open(HERE / "busy.jsonl.gz", "rt") as f:
        updates = list(read_rawjson(f))
    # four of the sixteen requests, a third of the way in: steps running, logs streaming
    wanted = {"req0", "req1", "req2", "req3"}
    for update in updates[: len(updates) // 3]:
        if update.request in wanted:
            model.apply(update)
    app = ProgressApp(model, clock=model.last_time)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        OUT.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=OUT.name, path=str(OUT.parent))
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
