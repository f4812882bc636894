"""Start ``market-ab serve`` as a child process on free loopback ports and wait for its ready line."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .mlserver_process import free_ports
from .serve import ALERTMANAGER_LINE, MLSERVER_LINE, PROMETHEUS_LINE, READY_LINE


class ServeProcess:
    """``with ServeProcess("models/", ["manifests/overlays/dev"]) as serve: serve.http_url ...``"""

    def __init__(self, models_dir: str | Path, manifests: list[str | Path], seed: int | None = 0,
                 log_path: str | Path | None = None, ready_timeout: float = 240.0, extra_args: list[str] = (),
                 env: dict | None = None, prometheus: bool = False, admin: bool = True,
                 alertmanager: bool = False):
        """``prometheus``: run the stack's Prometheus too, on a free port (``prometheus_url``); ``admin``: the admin
        port, on a free port (``admin_url``); ``alertmanager``: Alertmanager beside Prometheus (``alertmanager_url``;
        its receivers on the admin port)."""
        self.models_dir, self.manifests = Path(models_dir), [Path(m) for m in manifests]
        ports = iter(free_ports(5))  # all different
        self.http_port, self.grpc_port = next(ports), next(ports)
        self.prometheus_port = next(ports) if prometheus else None
        self.prometheus_url = self.prometheus_pid = None
        self.alertmanager_port = next(ports) if prometheus and alertmanager else None
        self.alertmanager_url = self.alertmanager_pid = None
        self.admin_port = next(ports) if admin else None
        self.seed, self.ready_timeout, self.extra_args = seed, ready_timeout, list(extra_args)
        self.log_path = Path(log_path) if log_path else None
        self.env = env or {}
        self.lines: list[str] = []  # everything the command printed
        self.mlserver_http_url = self.mlserver_grpc_address = self.mlserver_metrics_url = self.mlserver_pid = None
        self._process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def admin_url(self) -> str | None:
        return f"http://127.0.0.1:{self.admin_port}" if self.admin_port else None

    @property
    def pid(self) -> int | None:
        """The ``market-ab serve`` process, which runs the gateway."""
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "seldon_market_ab.cli", "--models-dir", str(self.models_dir), "serve",
                   "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]
        for manifest in self.manifests:
            command += ["--manifests", str(manifest)]
        command += ["--prometheus-port", str(self.prometheus_port)] if self.prometheus_port else ["--no-prometheus"]
        command += ["--admin-port", str(self.admin_port)] if self.admin_port else ["--no-admin"]
        command += ["--alertmanager-port", str(self.alertmanager_port)] if self.alertmanager_port else \
            ["--no-alertmanager"]
        return command + (["--seed", str(self.seed)] if self.seed is not None else []) + self.extra_args

    def start(self) -> ServeProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self._process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True, env=env)
        lines: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                self.stop(signal.SIGKILL)
                raise TimeoutError(f"market-ab serve not ready after {self.ready_timeout} s:\n{self.output()}") \
                    from None
            if line is None:  # the command ended
                self._process.wait()
                raise RuntimeError(f"market-ab serve exited with {self._process.returncode}:\n{self.output()}")
            if line.startswith(MLSERVER_LINE):
                found = re.search(r"REST (\S+), gRPC (\S+), metrics (\S+), pid (\d+)", line)
                self.mlserver_http_url, self.mlserver_grpc_address = found[1], found[2]
                self.mlserver_metrics_url, self.mlserver_pid = found[3], int(found[4])
            if line.startswith(PROMETHEUS_LINE):
                found = re.match(r"\S+ (\S+)\s+\(pid (\d+)", line)
                self.prometheus_url, self.prometheus_pid = found[1], int(found[2])
            if line.startswith(ALERTMANAGER_LINE):
                found = re.match(r"\S+ (\S+)\s+\(pid (\d+)", line)
                self.alertmanager_url, self.alertmanager_pid = found[1], int(found[2])
            if line.startswith(READY_LINE):
                return self

    def _read(self, lines: queue.Queue) -> None:
        """Every line the command prints, into ``self.lines`` and ``lines``; None once it ends."""
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))
            lines.put(self.lines[-1])
        lines.put(None)

    def output(self, lines: int = 80) -> str:
        return "\n".join(self.lines[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        """Signal the command (it stops its gateway and MLServer) and return its exit code."""
        if not self._process:
            return None
        killed = sig == signal.SIGKILL
        if self._process.poll() is None:
            self._process.send_signal(sig)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
                killed = True
        children = (self.mlserver_pid, self.prometheus_pid, self.alertmanager_pid)
        for pid in children if killed else ():  # own process groups: nothing stopped them
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):  # gone, or never started
                pass
        if getattr(self, "_reader", None):
            self._reader.join(timeout=5)
        if self.log_path:
            self.log_path.write_text("\n".join(self.lines) + "\n")
        return self._process.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
