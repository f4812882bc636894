"""The distribution's monitoring binaries (Prometheus, Alertmanager) as children of the local stack.

``LocalBinary`` is what they share: refuse a taken port (its readiness would be another process's), start the
binary with its log in its folder, wait until ``/-/ready`` answers, stop it. It dies with the thread that started
it, even when the stack is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

_PR_SET_PDEATHSIG = 1

try:  # resolved here, not in the child between fork and exec, where loading a library is not safe
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the stack's own stop still ends it
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it ends (the stack's main thread), even by
    SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalBinary:
    """Subclasses name the binary (``names``: the first found on PATH), how to install it and the command line."""

    label = "binary"  # in messages
    package = "the distribution's package"
    names: tuple[str, ...] = ()
    install_hint = ""
    port_option, off_option = "--port", "--no-binary"

    def __init__(self, folder: Path, port: int, host: str = "127.0.0.1", ready_timeout: float = 60.0):
        """``folder`` holds its configuration, log and data."""
        self.folder, self.port, self.host, self.ready_timeout = Path(folder), port, host, ready_timeout
        self.binary = next((found for found in map(shutil.which, self.names) if found), None)
        if self.binary is None:
            raise FileNotFoundError(f"{self.label} is not installed: {self.install_hint}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / f"{self.label}.log"
        self._process: subprocess.Popen | None = None

    @classmethod
    def installed(cls) -> bool:
        return any(shutil.which(name) for name in cls.names)

    def command(self) -> list[str]:
        raise NotImplementedError

    @classmethod
    def check_port(cls, host: str, port: int) -> None:
        """RuntimeError when ``port`` is taken: its readiness would be another process's."""
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError as error:
                raise RuntimeError(f"port {port} on {host} is in use ({error.strerror}); the distribution's "
                                   f"{cls.package} package may run {cls.label} as a service there: choose another "
                                   f"port with {cls.port_option}, or run without it: {cls.off_option}") from None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self):
        """Start it and wait until it answers; call from a thread that lives as long as it should (it stops when
        that thread ends). RuntimeError when its port is taken or it does not become ready."""
        self.check_port(self.host, self.port)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(self.command(), cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self.ready_timeout
        while self._process.poll() is not None or not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.label} did not become ready on {self.url}; its log:\n{self.log_tail()}")
            time.sleep(0.1)  # polling its readiness endpoint, with a deadline
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
