"""``market-ab rollout run``: the loop around ``controller.decide``, easy to follow in its log.

    start (or resume) -> set the step's weights -> every interval: read the figures from Prometheus, decide,
    write the decision to the audit log, move the weights, tell the display, the metrics and the webhooks
    -> end: promoted (candidate 100) or rolled_back / kept_baseline / aborted (baseline 100)

The decision is durable in the audit log before the weights move, so a loop killed between the two resumes by
setting the weights the log says (never a step ahead of it). SIGINT and SIGTERM end a run aborted.
"""

from __future__ import annotations

import datetime
import json
import os
import select
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace

from prometheus_client import CollectorRegistry, Gauge

from .audit import AuditLog
from .controller import ABORTED, HOLD, PHASES, PROGRESSING, PROMOTED, Decision, Progress, decide, time_is_up
from .document import Rollout
from .figures import Counters, FiguresError, PrometheusFigures
from .gates import INCONCLUSIVE
from .targets import KEEP, TargetError, candidate_weights


def _now_iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="milliseconds")


class RolloutMetrics:
    """``market_ab_rollout_step``, ``..._candidate_weight``, ``..._phase`` (the index in ``PHASES``) and
    ``..._candidate_requests``, on a registry of their own (``--metrics-port`` serves it)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        labels = ["rollout", "experiment"]
        self.step = Gauge("market_ab_rollout_step", "The step a rollout holds (1-based; 0 before the first)",
                          labels, registry=self.registry)
        self.weight = Gauge("market_ab_rollout_candidate_weight", "The candidate's weight in percent", labels,
                            registry=self.registry)
        self.phase = Gauge("market_ab_rollout_phase", "0 progressing, 1 promoted, 2 rolled_back, 3 kept_baseline, "
                           "4 aborted", labels, registry=self.registry)
        self.requests = Gauge("market_ab_rollout_candidate_requests", "Requests routed to the candidate since the "
                              "rollout began", labels, registry=self.registry)

    def show(self, rollout: Rollout, step: int, weight: int, phase: str, candidate_requests: int) -> None:
        labels = (rollout.name, rollout.spec.experiment)
        self.step.labels(*labels).set(step)
        self.weight.labels(*labels).set(weight)
        self.phase.labels(*labels).set(PHASES.index(phase))
        self.requests.labels(*labels).set(candidate_requests)


class Display:
    """One status line rewritten in place on a terminal; a plain line per look otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def look(self, rollout: Rollout, decision: Decision, outcomes: int) -> None:
        spec, progress = rollout.spec, decision.progress
        in_step = outcomes - progress.step_outcomes
        gates = " ".join(f"{gate.name}={gate.verdict}" for gate in decision.gates)
        where = "mirror phase" if progress.mirroring else f"step {progress.step + 1}/{len(spec.steps)}"
        line = (f"{rollout.name}: {where} weight {decision.candidate_weight}% "
                f"outcomes {in_step}/{spec.min_outcomes} {gates} -> {decision.action}")
        if self.tty and decision.action == "hold":
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
            if decision.action != "hold":
                for reason in decision.reasons:
                    self.stream.write(f"  {reason}\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


class Webhooks:
    """POSTs each event to the webhooks that want it; a failed call is reported, never stops the rollout."""

    def __init__(self, rollout: Rollout, display: Display, timeout: float = 5.0):
        self.rollout, self.display, self.timeout = rollout, display, timeout

    def post(self, event: str, payload: dict) -> None:
        for hook in self.rollout.spec.webhooks:
            if hook.events and event not in hook.events:
                continue
            body = json.dumps({"rollout": self.rollout.name, "experiment": self.rollout.spec.experiment,
                               "event": event, **payload}).encode()
            request = urllib.request.Request(hook.url, data=body, headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=self.timeout).close()
            except Exception as error:  # noqa: BLE001 - a notification never stops the rollout
                self.display.say(f"webhook {hook.name}: {event} not delivered ({error})")


class Stop:
    """Set from a signal handler, waited on by the loop: a flag and a self-pipe (``threading.Event.set`` takes a
    lock, which a handler interrupting its owner would wait for forever)."""

    def __init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self.requested = False
        self.reason = "aborted by a signal or `market-ab rollout abort`"

    def set(self, *_signal) -> None:
        self.requested = True
        try:
            os.write(self._write, b"x")
        except BlockingIOError:  # already woken
            pass

    def wait(self, timeout: float) -> bool:
        """True once set (at once if it was), else False after ``timeout`` seconds."""
        if not self.requested:
            select.select([self._read], [], [], timeout)
        return self.requested


def stop_on_signals() -> Stop:
    """A Stop that SIGINT and SIGTERM set (a command's loop ends at its next look, its run recorded)."""
    stop = Stop()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop.set)
    return stop


def serve_metrics(port: int | None, host: str, registry) -> None:
    """``--metrics-port``: the registry on ``port``/metrics, in a thread (nothing without a port)."""
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, host, registry=registry)



class ResumeError(RuntimeError):
    """The unfinished run cannot be resumed with this document; the message says why."""


class RolloutRunner:
    def __init__(self, rollout: Rollout, target, audit: AuditLog, figures: PrometheusFigures | None = None,
                 display: Display | None = None, metrics: RolloutMetrics | None = None,
                 clock: Callable[[], float] = time.time, stop: Stop | None = None):
        self.rollout, self.spec, self.target, self.audit = rollout, rollout.spec, target, audit
        self.figures = figures or PrometheusFigures(rollout.spec)
        self.display = display or Display()
        self.metrics = metrics or RolloutMetrics()
        self.webhooks = Webhooks(rollout, self.display)
        self.clock, self.stop = clock, stop or Stop()
        self.candidate_requests = self.candidate_outcomes = 0  # as of the last look
        self.original_mirror = None  # the experiment's mirror before the rollout (restored after a mirror phase)
        self.started = False  # a run began or resumed: a failure now leaves it unfinished, to be resumed

    # the loop ---------------------------------------------------------------------------------------------------

    def ended(self) -> dict | None:
        """The final line of this rollout's last run, if it ended (it is not run again without ``restart``)."""
        run = self.audit.current_run()
        if run and run[0].get("rollout") == self.rollout.name and run[-1].get("event") == "end":
            return {key: run[-1].get(key) for key in ("rollout", "phase", "reasons", "candidate_requests")}
        return None

    def run(self, restart: bool = False) -> dict:
        """Run (or resume) the rollout to its end; the final line's fields. A rollout whose last run ended is not
        run again (a Job's new pod, a second `run` by hand) unless ``restart``: its end is returned."""
        ended = self.ended()
        if ended and not restart:
            self.display.say(f"{self.rollout.name}: ended {ended['phase']} already (audit {self.audit.path}); "
                             "--restart runs it again")
            return ended
        progress, start, weight, reasons = self._begin()
        while progress.phase == PROGRESSING:
            if self.stop.wait(self.spec.interval):
                decision = Decision("abort", replace(progress, phase=ABORTED), 0, (), (self.stop.reason,))
            else:
                decision = self._look(progress, start)
                if decision is None:
                    continue
            self._record(decision)  # durable before the weights move
            mirroring, final = decision.progress.mirroring, decision.progress.phase != PROGRESSING
            if decision.candidate_weight != weight or mirroring != progress.mirroring:
                self._move(decision.candidate_weight, final, mirroring)
                weight = decision.candidate_weight
            else:
                self._keep_weights(weight, mirroring)
            progress, reasons = decision.progress, list(decision.reasons)
            if decision.action != "abort":  # shown once logged and in force
                self.display.look(self.rollout, decision, self.candidate_outcomes)
            self.metrics.show(self.rollout, progress.step + 1, weight, PROGRESSING, self.candidate_requests)
            if decision.action not in (HOLD, "abort"):
                event = {"roll_back": "rollback"}.get(decision.action, decision.action)  # Flagger's name for it
                self.webhooks.post(event, {"step": progress.step + 1, "weights": self._weights(weight),
                                           "reasons": reasons})
        return self._end(progress, reasons, start)

    def _look(self, progress: Progress, start: Counters) -> Decision | None:
        """The decision of one look, or None when the figures cannot be read (a Prometheus outage holds the
        rollout: it never decides blind, but ``maxDuration`` still ends it)."""
        try:
            counters = self.figures.counters()
        except FiguresError as error:
            if self.clock() - progress.started >= self.spec.max_duration:
                return time_is_up(self.spec, progress)
            self.display.say(f"{self.rollout.name}: figures unavailable, holding: {error}")
            return None
        baseline, candidate = counters.since(start, "baseline"), counters.since(start, "candidate")
        self.candidate_requests = candidate.requests
        self.candidate_outcomes = candidate.outcomes
        return decide(self.spec, progress, baseline, candidate, self.clock())

    def _record(self, decision: Decision) -> None:
        self.audit.append({"event": "decision", "time": _now_iso(self.clock()), "action": decision.action,
                           "step": decision.progress.step + 1, "weights": self._weights(decision.candidate_weight),
                           "candidate_requests": self.candidate_requests,
                           "gates": [{"name": gate.name, "verdict": gate.verdict, "figures": gate.figures,
                                      "reason": gate.reason} for gate in decision.gates],
                           "reasons": list(decision.reasons), "progress": decision.progress.as_dict()})

    def _same_document(self, started_with: dict | None) -> bool:
        """Whether the run began with this document (where the figures come from may differ: ``--prometheus``)."""
        ours = self.spec.model_dump(by_alias=True, mode="json", exclude={"prometheus"})
        return {k: v for k, v in (started_with or {}).items() if k != "prometheus"} == ours

    def _begin(self) -> tuple[Progress, Counters, int, list[str]]:
        run = self.audit.unfinished_run()
        if run and run[0].get("rollout") != self.rollout.name:
            raise ResumeError(f"the audit log {self.audit.path} holds an unfinished run of rollout "
                              f"{run[0].get('rollout')!r}; finish or `market-ab rollout abort` it first, or give this "
                              "rollout a log of its own (--audit)")
        if run:
            started_with = run[0].get("spec")
            if not self._same_document(started_with):
                raise ResumeError(f"{self.rollout.name}: the document changed since its unfinished run began "
                                  f"({run[0].get('time')}); finish it with the document it began with, or `market-ab "
                                  "rollout abort` it first")
            start = Counters.from_dict(run[0]["start_counters"])
            self.original_mirror = run[0].get("original_mirror")
            last = next(r for r in reversed(run) if "progress" in r)
            progress = Progress(**last["progress"])
            reasons = next((r["reasons"] for r in reversed(run) if r.get("event") == "decision"), [])
            self.candidate_requests = next((r["candidate_requests"] for r in reversed(run)
                                            if "candidate_requests" in r), 0)
            weight = 0 if progress.mirroring else self.spec.steps[progress.step] \
                if progress.phase == PROGRESSING else 100 if progress.phase == PROMOTED else 0
            self.audit.append({"event": "resume", "time": _now_iso(self.clock()), "pid": os.getpid(),
                               "step": progress.step + 1, "weights": self._weights(weight),
                               "progress": progress.as_dict()})
            self.started = True
            where = "the mirror phase" if progress.mirroring else f"step {progress.step + 1}/{len(self.spec.steps)}"
            self.display.say(f"{self.rollout.name}: resuming at {where} (candidate {weight}%), audit "
                             f"{self.audit.path}")
            event = "resume"
        else:
            self.original_mirror = self._check_experiment().get("mirror")
            now = self.clock()
            # count from a scrape taken after now: requests the candidate answered just before (another
            # experiment's, say) that Prometheus had not yet scraped would otherwise count as this rollout's
            self._await_scrape(now)
            progress, start, reasons = Progress.begin(now, self.spec.mirror is not None), self.figures.counters(), []
            weight = 0 if progress.mirroring else self.spec.steps[0]
            self.audit.append({"event": "start", "time": _now_iso(now), "rollout": self.rollout.name,
                               "pid": os.getpid(), "spec": self.spec.model_dump(by_alias=True, mode="json"),
                               "start_counters": start.as_dict(), "original_mirror": self.original_mirror,
                               "step": 1, "weights": self._weights(weight), "progress": progress.as_dict()})
            self.started = True
            self.display.say(f"{self.rollout.name}: {self.spec.baseline} -> {self.spec.candidate} through "
                             f"experiment {self.spec.experiment} ({self.target}), "
                             f"{'a mirror phase, then ' if progress.mirroring else ''}steps {list(self.spec.steps)} "
                             f"every {self.spec.interval:g} s; audit {self.audit.path}")
            event = "start"
        self._set_weights(weight, progress.phase != PROGRESSING, progress.mirroring)
        self.metrics.show(self.rollout, progress.step + 1, weight, PROGRESSING, 0)
        self.webhooks.post(event, {"step": progress.step + 1, "weights": self._weights(weight)})
        return progress, start, weight, reasons

    def _check_experiment(self) -> dict:
        """The experiment's spec; its weights are percentages only if no other candidate takes traffic."""
        spec = self.target.spec()
        others = {name: weight for name, weight in candidate_weights(spec).items()
                  if name not in (self.spec.baseline, self.spec.candidate) and weight > 0}
        if others:
            raise TargetError(f"experiment {self.spec.experiment} gives traffic to {others} besides the baseline and "
                              "the candidate; set them to 0 first (a rollout's weights are percentages of it all)")
        return spec

    def _end(self, progress: Progress, reasons: list[str], start: Counters) -> dict:
        phase = progress.phase
        weight = 100 if phase == PROMOTED else 0
        self._set_weights(weight, final=True)  # again: a resumed run may not have set it
        requests = self._final_candidate_requests(start, self.clock())
        final = {"rollout": self.rollout.name, "phase": phase, "reasons": reasons, "candidate_requests": requests}
        self.audit.append({"event": "end", "time": _now_iso(self.clock()), **final, "step": progress.step + 1,
                           "weights": self._weights(weight)})
        self.metrics.show(self.rollout, progress.step + 1, weight, phase, requests)
        if phase == ABORTED:
            self.webhooks.post("abort", {"reasons": reasons, "candidate_requests": requests})
        self.display.say(f"{self.rollout.name}: {phase}: {'; '.join(reasons)} ({requests} candidate requests)")
        return final

    # helpers ----------------------------------------------------------------------------------------------------

    def _weights(self, candidate_weight: int) -> dict[str, int]:
        return {self.spec.baseline: 100 - candidate_weight, self.spec.candidate: candidate_weight}

    def _mirror(self, mirroring: bool):
        """The experiment's mirror: the candidate's copies in the mirror phase, else the one it had (untouched by a
        rollout without a mirror phase)."""
        if self.spec.mirror is None:
            return KEEP
        return {"name": self.spec.candidate, "percent": self.spec.mirror.percent} if mirroring else \
            self.original_mirror

    def _set_weights(self, candidate_weight: int, final: bool = False, mirroring: bool = False,
                     attempts: int = 8) -> None:
        """Move the weights (and the mirror) and note when they moved. A final move (rollback, promotion, abort) is
        tried again for about a minute: it must not be left half done; a run that still fails resumes from the
        log."""
        asked = _now_iso(self.clock())
        for attempt in range(attempts if final else 1):
            try:
                self.target.set_weights(self._weights(candidate_weight), self._mirror(mirroring))
                break
            except TargetError as error:
                if attempt == (attempts if final else 1) - 1:
                    raise
                self.display.say(f"{self.rollout.name}: setting the weights failed, trying again: {error}")
                time.sleep(min(2 ** attempt, 15))
        self.audit.append({"event": "weights", "asked": asked, "time": _now_iso(self.clock()),
                           "weights": self._weights(candidate_weight), "mirroring": mirroring})

    def _move(self, candidate_weight: int, final: bool, mirroring: bool) -> None:
        """A decided move. One that is not final and fails is tried again at the next look (the decision is logged;
        the look finds the weights behind it); a final one that still fails after its retries ends the process,
        the run unfinished, to be resumed."""
        try:
            self._set_weights(candidate_weight, final, mirroring)
        except TargetError as error:
            if final:
                raise
            self.display.say(f"{self.rollout.name}: the weights did not move ({error}); trying again next look")

    def _keep_weights(self, candidate_weight: int, mirroring: bool = False) -> None:
        """Set the weights again if something else changed them (a restarted stack, a hand edit, a sync)."""
        try:
            spec = self.target.spec()
        except TargetError as error:
            self.display.say(f"{self.rollout.name}: could not read the weights: {error}")
            return
        found, expected, mirror = candidate_weights(spec), self._weights(candidate_weight), self._mirror(mirroring)
        if any(found.get(name) != weight for name, weight in expected.items()) or \
                (mirror is not KEEP and spec.get("mirror") != mirror):
            self.display.say(f"{self.rollout.name}: the weights were changed outside the rollout ({found}, mirror "
                             f"{spec.get('mirror')}); setting {expected} again")
            self._move(candidate_weight, False, mirroring)

    def _await_scrape(self, moment: float, timeout: float = 30.0) -> bool:
        """Until Prometheus holds a sample of the candidate's counters taken after ``moment``, at most ``timeout``
        seconds; whether it does."""
        deadline = time.monotonic() + timeout
        while not self.figures.scraped_after(moment):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)  # Prometheus's next scrape is at most one scrape interval away
        return True

    def _final_candidate_requests(self, start: Counters, changed: float, timeout: float = 30.0) -> int:
        """The candidate's requests once Prometheus has scraped its counters twice after the last weight change
        (a request routed before the change and answered after the first scrape is in the second), or after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:
            for _ in range(2):
                self._await_scrape(changed, deadline - time.monotonic())
                changed = self.clock()
            return self.figures.counters().since(start, "candidate").requests
        except (FiguresError, OSError, RuntimeError, ValueError, KeyError) as error:
            self.display.say(f"{self.rollout.name}: the final count is the last look's: {error}")
            return self.candidate_requests


def describe(run: list[dict]) -> dict:
    """``market-ab rollout status``: where the last run stands, from its audit lines."""
    if not run:
        return {"phase": "none"}
    last = run[-1]
    decided = next((r for r in reversed(run) if "progress" in r or r.get("event") == "end"), last)
    gates = next((r["gates"] for r in reversed(run) if "gates" in r), [])
    weights = next((r["weights"] for r in reversed(run) if "weights" in r), None)
    return {"rollout": run[0].get("rollout"), "phase": last.get("phase", decided.get("progress", {}).get("phase")),
            "step": decided.get("step"), "weights": weights, "since": run[0].get("time"), "updated": last.get("time"),
            "candidate_requests": next((r["candidate_requests"] for r in reversed(run) if "candidate_requests" in r),
                                       0),
            "gates": {g["name"]: g["verdict"] for g in gates}, "reasons": decided.get("reasons", []),
            "waiting": [g["reason"] for g in gates if g["verdict"] == INCONCLUSIVE]}
