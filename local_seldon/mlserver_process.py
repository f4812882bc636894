"""Start ``mlserver start <repository>`` as a child process on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports: the sockets stay bound until all are chosen, since a port just
    released can be handed out again at once (two servers of one stack were once given the same)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _mlserver_executable() -> str:
    beside_python = Path(sys.executable).with_name("mlserver")
    return str(beside_python) if beside_python.exists() else shutil.which("mlserver") or "mlserver"


def process_tree(pid: int) -> list[int]:
    """``pid`` and the pids of every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, stack = [], [pid]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack += children.get(pid, [])
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user and system) the processes have used so far."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class StartInterrupted(RuntimeError):
    """Asked to stop before every model was ready."""


class MLServerProcess:
    """``with MLServerProcess("models/", parallel_workers=0) as server: server.http_url ...``"""

    def __init__(self, repository: str | Path, parallel_workers: int | None = 0, ready_timeout: float = 180.0,
                 log_path: str | Path | None = None, env: dict | None = None, state_dir: str | Path | None = None,
                 executable: str | Path | None = None, interrupted=None):
        """``state_dir``: where routers keep their SQLite state (``MARKET_AB_STATE_DIR``); default: a new
        temporary directory, so every server starts with fresh routers unless it is given one to share.
        ``executable``: the ``mlserver`` command (default: the one beside this Python).
        ``interrupted``: a callable checked while waiting for the models; when it returns true the server is
        stopped and ``StartInterrupted`` raised (a supervisor's SIGTERM during the load).
        ``parallel_workers``: ``None`` leaves it to the repository's ``settings.json``; a number is passed as
        ``MLSERVER_PARALLEL_WORKERS``, which MLServer ignores when ``settings.json`` sets it, so a number that
        contradicts that file is refused."""
        self.repository = Path(repository).resolve()
        settings_file = self.repository / "settings.json"
        pinned = json.loads(settings_file.read_text()).get("parallel_workers") if settings_file.exists() else None
        if parallel_workers is not None and pinned is not None and pinned != parallel_workers:
            raise ValueError(f"{settings_file} sets parallel_workers to {pinned}, which MLServer prefers over "
                             f"the {parallel_workers} asked for here; pass parallel_workers=None or {pinned}")
        self.parallel_workers = parallel_workers
        self.ready_timeout = ready_timeout
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self._workdir = Path(tempfile.mkdtemp(prefix="mlserver-"))
        self.state_dir = Path(state_dir) if state_dir else self._workdir / "state"
        self.log_path = Path(log_path) if log_path else self._workdir / "mlserver.log"
        self._extra_env = env or {}
        self.executable = str(executable) if executable else _mlserver_executable()
        self.interrupted = interrupted
        self._process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, wait_for: list[str] | None = None, launched=None) -> MLServerProcess:
        """Start the server and wait until every model (or only the models named in ``wait_for``) is ready.
        ``launched(pid)`` is called as soon as the process exists, before the wait."""
        env = {
            **os.environ,
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(self.http_port),
            "MLSERVER_GRPC_PORT": str(self.grpc_port),
            "MLSERVER_METRICS_PORT": str(self.metrics_port),
            "MLSERVER_METRICS_DIR": str(self._workdir / "metrics"),
            "MARKET_AB_STATE_DIR": str(self.state_dir),
            **({} if self.parallel_workers is None else {"MLSERVER_PARALLEL_WORKERS": str(self.parallel_workers)}),
            **self._extra_env,
        }
        self._log = open(self.log_path, "ab")
        started = time.perf_counter()
        self._process = subprocess.Popen(
            [self.executable, "start", str(self.repository)],
            env=env, cwd=self._workdir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if launched is not None:
            launched(self._process.pid)
        self.wait_until_ready(wait_for)
        self.ready_seconds = time.perf_counter() - started  # from the command to every model ready
        return self

    def wait_until_ready(self, models: list[str] | None = None) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.interrupted is not None and self.interrupted():
                self.stop()
                raise StartInterrupted("stopped while the models were loading")
            if self._process.poll() is not None:
                raise RuntimeError(f"mlserver exited with {self._process.returncode}; log:\n{self.log_tail()}")
            try:
                if self._models_ready(models):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            except RuntimeError:  # a model failed to load: the server is of no use, and must not outlive this
                self.stop()
                raise
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"mlserver not ready after {self.ready_timeout}s; log:\n{self.log_tail()}")

    def _models_ready(self, models: list[str] | None = None) -> bool:
        """Every folder with a model-settings.json (or every model in ``models``) is loaded (the health check alone
        passes earlier)."""
        expected = set(models) if models is not None else {json.loads(p.read_text()).get("name", p.parent.name)
                                                           for p in self.repository.rglob("model-settings.json")}
        request = urllib.request.Request(f"{self.http_url}/v2/repository/index", data=b"{}",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=2) as response:
            index = json.loads(response.read())
        ready = {entry["name"] for entry in index if entry.get("state") == "READY"}
        failed = {entry["name"] for entry in index if entry.get("state") == "FAILED"}
        if failed:
            raise RuntimeError(f"models failed to load: {sorted(failed)}; log:\n{self.log_tail()}")
        return expected <= ready

    @property
    def pid(self) -> int | None:
        """The ``mlserver`` process (with ``parallel_workers`` 0, the one that serves)."""
        return self._process.pid if self._process else None

    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    def process_tree(self) -> list[int]:
        """The server's pid and those of every process it started (parallel workers, drift test processes)."""
        if not self._process or self._process.poll() is not None:
            return []
        return process_tree(self._process.pid)

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the server and its workers have used so far."""
        return cpu_seconds(self.process_tree())

    def resident_memory(self) -> int:
        """Resident memory in bytes of the server and its workers."""
        total = 0
        for pid in self.process_tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next((int(line.split()[1]) * 1024 for line in status.splitlines()
                           if line.startswith("VmRSS:")), 0)
        return total

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, sig)  # the whole group: parallel workers too
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> MLServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
