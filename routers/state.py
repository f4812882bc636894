"""What a router's request handlers share (``RouterState``): its settings, policy, store and writer thread, and
its snapshot of the store.

The hot path reads, never writes and never waits on a disk: a decision checks the store's version (one indexed
read), reuses its snapshot of states, health and the propensities derived from each state, draws, and queues its
own record for the writer thread, which commits it with whatever else is queued. Feedback and health messages
wait for their group commit, so an acknowledged reward is durable. The propensities are derived once per state
change, by the writer, and stored beside the state for every worker and replica to read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlserver.errors import MLServerError

from seldon_market_ab.mlserver_compat import UNAVAILABLE

from .bandit import Policy, State, state_from_dict
from .router_metrics import CommitObserver, router_metrics
from .settings import RouterSettings
from .stores import Snapshot, StateStore, StoreUnavailableError, StoreWriter, open_store

logger = logging.getLogger(__name__)

SNAPSHOT_MAX_AGE_SECONDS = 0.01  # how stale a decision's view of other workers' feedback may be
STORE_DEADLINE_SECONDS = 2.0  # a store read from a decision, or a feedback's commit, that takes longer has failed
DERIVE_WHILE_DECIDING_SECONDS = 0.5  # rarer decisions derive propensities for themselves (~0.2 ms, once per state)
EXPIRY_SWEEP_SECONDS = 600.0  # how often (at most) decisions and outcomes older than their time-to-live are deleted


def store_unavailable(what: str, whose: str = "the router's") -> MLServerError:
    """503, retryable: ``what`` may not have been applied. The message names no store address: clients see it."""
    return MLServerError(f"{whose} state store is unavailable; {what}", status_code=UNAVAILABLE)


@dataclass(eq=False)
class RouterState:
    """One router in one worker process; the store behind it is shared by every worker and replica."""

    name: str
    config: RouterSettings
    policy: Policy
    policy_key: str  # ``config.policy_key()``: what was derived from a state is used only under the same policy
    store: StateStore
    metrics: dict  # ``router_metrics()``
    clock: Callable[[], float]  # epoch seconds
    writer: StoreWriter | None = None  # started by ``open``, once the state it calls back into exists
    snapshot: Snapshot | None = None  # the store's states, health and derived propensities, as last read
    checked: float = 0.0  # time.monotonic() of the last version check
    read_after_commit: int = 0  # the writer's commit count when the snapshot was last read after a commit
    last_decision: float = 0.0  # epoch seconds; the writer derives what decisions read while they keep coming
    on_new_snapshot: Callable[[], None] | None = None  # the health gauge, refreshed from every new snapshot

    @classmethod
    def open(cls, name: str, config: RouterSettings, clock: Callable[[], float]) -> RouterState:
        """Open the router's store and start its writer. The store is never in the model folder: on Seldon that
        folder is a downloaded artifact."""
        store = open_store(config.store_url(name), name, config.state_path())
        state = cls(name, config, config.policy(), config.policy_key(), store, router_metrics(), clock,
                    last_decision=clock())
        state.writer = StoreWriter(store, derive=state.derive, after_commit=state.publish_pending,
                                   name=f"{name}-store-writer",
                                   observe=CommitObserver(state.metrics["commit_writes"], name))
        return state

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the store."""
        if self.writer is not None:
            self.writer.close()
        self.store.close()

    # reading the store -------------------------------------------------------------------------------------

    async def current(self, force: bool = False) -> Snapshot:
        """The store's states, health and derived propensities, read again only when they changed. The version
        is checked at most every ``SNAPSHOT_MAX_AGE_SECONDS`` (a read on every decision would cost more than the
        decision), and at once after this worker's own feedback and health messages (``force``)."""
        checked = time.monotonic()
        if not force and self.snapshot is not None:
            if checked - self.checked < SNAPSHOT_MAX_AGE_SECONDS:
                return self.snapshot
            self.checked = checked
            if await self.read(self.store.version) == self.snapshot.version:
                return self.snapshot
        self.checked = checked  # forced: this worker's own write changed the state, no need to ask
        self.snapshot = await self.read(self.store.snapshot)
        self._publish_posteriors(self.snapshot)
        if self.on_new_snapshot is not None:
            self.on_new_snapshot()
        return self.snapshot

    async def read(self, read: Callable, *args):
        """A store read: inline from a local file (microseconds), else in a thread and within a deadline, so that a
        slow or hung store never holds up the event loop that serves every other model and the health checks."""
        if not self.store.remote:
            return read(*args)
        try:
            return await asyncio.wait_for(asyncio.to_thread(read, *args), STORE_DEADLINE_SECONDS)
        except TimeoutError:
            raise StoreUnavailableError(f"no answer within {STORE_DEADLINE_SECONDS} s") from None

    # the policy state of a context (the whole router, or one regime) ------------------------------------------

    def policy_state(self, stored: dict | None) -> State:
        """A context's policy state: the stored statistics, with fresh ones for arms added since."""
        return {**self.policy.initial_state(), **(state_from_dict(stored) if stored else {})}

    def derive(self, context: str, stored: dict) -> dict | None:
        """What decisions read beside a new state; runs in the writer thread, once per state change, while this
        worker is deciding (a decision in the last ``DERIVE_WHILE_DECIDING_SECONDS``). A stream of feedback alone (a
        day's truth sent in bulk) derives nothing: the next decision derives for itself, once per state."""
        if self.clock() - self.last_decision > DERIVE_WHILE_DECIDING_SECONDS:
            return None
        state = self.policy_state(stored)
        return {"policy": self.policy_key, "probabilities": self.policy.probabilities(state),
                "summary": self.policy.summary(state)}

    def derived(self, snapshot: Snapshot, context: str) -> dict | None:
        """What was derived from ``context``'s current state, unless another policy derived it."""
        derived = snapshot.derived.get(context)
        return derived if derived and derived["policy"] == self.policy_key else None

    # writing -------------------------------------------------------------------------------------------------

    async def commit(self, operations: list, what: str) -> list:
        """Apply writes and wait for their commit, within a deadline; a store outage is a retryable 503."""
        try:
            results = await self.writer.commit_within(STORE_DEADLINE_SECONDS, *operations)
        except StoreUnavailableError as error:
            logger.warning("%s: state store unavailable for %s (%s)", self.name, what, error)
            self.metrics["unavailable"].labels(self.name).inc()
            raise store_unavailable(f"the {what} may not have been applied: send it again (a repeated "
                                    "decision_id and reward counts once)") from None
        commits = self.writer.commits
        if self.read_after_commit < commits:  # the first of the requests that shared a commit reads the new state
            self.read_after_commit = commits
            try:
                await self.current(force=True)
            except StoreUnavailableError:  # committed; the next decision reads the new state
                pass
        return results

    # gauges --------------------------------------------------------------------------------------------------

    def _publish_posteriors(self, snapshot: Snapshot) -> None:
        for context, stored in snapshot.states.items():
            derived = self.derived(snapshot, context)
            summary = derived["summary"] if derived else self.policy.summary(self.policy_state(stored))
            for arm, (mean, low, high) in summary.items():
                self.metrics["mean"].labels(self.name, context, arm).set(mean)
                self.metrics["lower"].labels(self.name, context, arm).set(low)
                self.metrics["upper"].labels(self.name, context, arm).set(high)

    def publish_pending(self) -> None:
        """After each commit (in the writer thread): the decisions waiting for feedback, from the store."""
        self.metrics["pending"].labels(self.name).set(self.store.pending_count())
