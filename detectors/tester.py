"""Where the drift tests run: a child process at lower priority, or (``tests_in: thread``) a thread.

alibi-detect's tests and its online detector hold Python's GIL for most of their work. In a thread of the
serving process they delay every request the process serves, the models' included; in a process of their own,
niced, they take only the processor time that the predictions leave (``loadtest/drift_serving.py`` measures both).
The child holds all the state the tests need (checks, series calibration, online detector), so one child per
serving worker, like the rolling window.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .calibration import SeriesCalibration
from .checks import DriftChecks, Result
from .online import online_detector
from .reference import Reference
from .settings import DriftSettings
from .statistics import break_ties

logger = logging.getLogger(__name__)
NICENESS = 19  # of a test thread, or of the test process where SCHED_IDLE is not allowed
_thread_state = threading.local()  # per thread: whether its priority was lowered


class WindowTester:
    """The tests of one window, and the online detector's rows: what runs in the child (or a thread)."""

    def __init__(self, reference: Reference, settings: DriftSettings):
        self.settings, self.reference = settings, reference
        if settings.calibration == "series":
            self.checks = None
            self.series = SeriesCalibration(reference.segments(), reference.standardise, settings.window_size,
                                            settings.max_window_size)
        else:
            self.checks = DriftChecks(reference, settings.tests, settings.p_value, settings.correction,
                                      settings.mmd_permutations)
            self.series = None
        self._tie_breaker = np.random.default_rng(0)  # online rows get their ties broken as the tests' do
        self.online = online_detector(self._online_rows(reference.rows), reference.online) if settings.online \
            else None

    def test(self, window: np.ndarray) -> dict[str, Result]:
        if self.series is not None:
            return self.series.run(window, self.settings.tests, self.settings.p_value)
        return self.checks.run(window)

    def online_rows(self, rows: np.ndarray) -> tuple[int, float]:
        """Feed ``rows`` to the online detector one by one: the last verdict and the largest statistic."""
        statistic, drift = float("nan"), 0
        for row in self._online_rows(rows):
            data = self.online.predict(row)["data"]
            drift = int(data["is_drift"])
            stat = np.asarray(data["test_stat"], dtype=np.float64) if data["test_stat"] is not None else np.array([])
            if np.isfinite(stat).any():  # NaN until the first window of the stream is full
                statistic = float(np.nanmax(stat))
        return drift, statistic

    def _online_rows(self, rows: np.ndarray) -> np.ndarray:
        return break_ties(self.reference.standardise(rows), np.ones(rows.shape[1], np.float32), self._tie_breaker)


# in the child process ---------------------------------------------------------------------------------------

_tester: WindowTester | None = None


def _start_child(uri: str, settings: dict, niceness: int, parent: int) -> None:
    global _tester
    _lower_priority(niceness, process=True)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="watch-parent", daemon=True).start()
    _tester = WindowTester(Reference.load(uri), DriftSettings(**settings))


def _exit_with_parent(parent: int) -> None:
    """A parent killed with SIGKILL cannot stop its children: leave when we are handed to another parent."""
    while os.getppid() == parent:
        threading.Event().wait(1.0)
    os._exit(0)


def _child_test(window: np.ndarray) -> dict[str, Result]:
    return _tester.test(window)


def _child_online(rows: np.ndarray) -> tuple[int, float]:
    return _tester.online_rows(rows)


def _lower_priority(niceness: int, process: bool = False) -> None:
    """The test process runs under SCHED_IDLE: Linux gives it a processor only when no other task wants one, and
    takes it back the moment a serving thread wakes (a niced task keeps its slice for a few milliseconds)."""
    if process:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except (OSError, AttributeError):  # not permitted, or not Linux: fall back to niceness
            pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0 if process else threading.get_native_id(), niceness)
    except (OSError, AttributeError):  # not permitted, or not Linux: run at normal priority
        pass


# in the serving process -------------------------------------------------------------------------------------

class TestRunner:
    """Runs a ``WindowTester`` off the event loop: ``await runner.test(window)``, ``await runner.online(rows)``.
    One worker (a process, or a thread of its own) runs the calls one at a time, in the order they came, even
    when a caller gave up waiting: the online detector keeps state and is not thread-safe."""

    def __init__(self, uri: str, reference: Reference, settings: DriftSettings, niceness: int = NICENESS):
        self._uri, self._settings, self._niceness = uri, settings, niceness
        self._tester: WindowTester | None = None
        if settings.tests_in == "thread":
            self._tester = WindowTester(reference, settings)
            self._pool: Executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-tests")
        else:
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_child,
                                   initargs=(self._uri, self._settings.model_dump(), self._niceness, os.getpid()))

    async def test(self, window: np.ndarray) -> dict[str, Result]:
        return await self._call(_child_test, "test", window)

    async def online(self, rows: np.ndarray) -> tuple[int, float]:
        return await self._call(_child_online, "online_rows", rows)

    async def _call(self, in_child, method: str, argument: np.ndarray):
        loop = asyncio.get_running_loop()
        if self._tester is not None:
            return await loop.run_in_executor(self._pool, self._in_thread, method, argument)
        try:
            return await loop.run_in_executor(self._pool, in_child, argument)
        except BrokenProcessPool:  # the child died (say, killed for memory): start another, try once more
            logger.error("the drift test process died or failed to start (its error is logged above); starting "
                         "a new one (the online detector starts over)")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return await loop.run_in_executor(self._pool, in_child, argument)

    def _in_thread(self, method: str, argument: np.ndarray):
        if not getattr(_thread_state, "lowered", False):
            _lower_priority(self._niceness)
            _thread_state.lowered = True
        return getattr(self._tester, method)(argument)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
