"""A rollout's audit log: one JSON line per event, written and fsynced before the weights move, so that what the
log says is what was decided, and a loop started again on the same file resumes where the last one stopped.

Lines: ``start`` (the spec, the counters the figures count from, the loop's pid), one ``decision`` per look (time,
step, weights, each gate's figures and verdict, reasons, where the rollout stands), ``resume`` when a loop takes a
run over, and ``end`` (the phase, reasons and the candidate's requests). A run is the lines from a ``start`` on.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path


def _finite(value):
    """JSON has no NaN or infinity: they are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class AuditLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_finite(record), allow_nan=False) + "\n"
        with open(self.path, "a+b") as out:
            if out.tell() and (out.seek(-1, os.SEEK_END), out.read(1))[1] != b"\n":
                line = "\n" + line  # a line cut short by a crash stays alone, and unread
            out.write(line.encode())
            out.flush()
            os.fsync(out.fileno())

    def current_run(self) -> list[dict]:
        """The lines of the last run (empty when there is none). A last line cut short by a crash is ignored."""
        if not self.path.exists():
            return []
        run: list[dict] = []
        for text in self.path.read_text().splitlines():
            try:
                record = json.loads(text)
            except ValueError:
                continue
            if record.get("event") == "start":
                run = []
            run.append(record)
        return run

    def lock(self):
        """The exclusive right to run this log's rollout, held until the returned file is closed (or the process
        ends, however it ends); None while another loop holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = open(self.lock_path, "a+")
        try:
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder.close()
            return None
        holder.truncate(0)
        holder.write(str(os.getpid()))  # who holds it: what `abort` signals
        holder.flush()
        return holder

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def holder(self) -> int | None:
        """The pid of the process that holds the lock (or held it last)."""
        try:
            return int(self.lock_path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def unfinished_run(self) -> list[dict]:
        """The last run if it has not ended (a loop was killed, or still runs), else empty."""
        run = self.current_run()
        return run if run and run[-1].get("event") != "end" else []
