"""The default store: one SQLite file in WAL mode, shared by MLServer's parallel workers.

Every write batch is one ``BEGIN IMMEDIATE`` transaction (a write lock across processes)
committed with ``synchronous=FULL``, so a committed reward survives kill -9; each operation in
the batch runs under its own savepoint, so one failing operation undoes only itself. Each
thread gets its own connection: the event loop reads while the writer thread writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import groupby
from pathlib import Path

from .base import (
    ApplyFeedback,
    ArmHealth,
    Decision,
    Derive,
    Expire,
    FeedbackOutcome,
    Operation,
    Outcome,
    OutcomeStatus,
    RecordDecision,
    RecordOutcome,
    Snapshot,
    StateStore,
    UpdateHealth,
    feedback_outcome,
    outcome_status,
    state_checksum,
    translate_errors,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_state (
    router TEXT NOT NULL, context TEXT NOT NULL, state TEXT NOT NULL, derived TEXT,
    PRIMARY KEY (router, context));
CREATE TABLE IF NOT EXISTS decisions (
    router TEXT NOT NULL, decision_id TEXT NOT NULL, decision TEXT NOT NULL, created REAL NOT NULL,
    reward REAL, PRIMARY KEY (router, decision_id));
CREATE INDEX IF NOT EXISTS decisions_created ON decisions (router, created);
CREATE TABLE IF NOT EXISTS health (
    router TEXT NOT NULL, arm TEXT NOT NULL, health TEXT NOT NULL, PRIMARY KEY (router, arm));
CREATE TABLE IF NOT EXISTS outcomes (
    router TEXT NOT NULL, request_id TEXT NOT NULL, outcome TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (router, request_id));
CREATE INDEX IF NOT EXISTS outcomes_created ON outcomes (router, created);
CREATE TABLE IF NOT EXISTS counters (
    router TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (router, name));
"""

ADD_TO_COUNTER = "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (router, name) DO UPDATE SET value = value + ?"


@dataclass
class _Batch:
    """What a batch (or one of its operations) changes before it is written: policy states by context, counter
    increments, and the contexts whose state changed (``None``: an arm's health)."""

    states: dict = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    changed: set = field(default_factory=set)

    def merge(self, other: _Batch) -> None:
        self.states.update(other.states)
        self.counts.update(other.counts)
        self.changed |= other.changed


class SQLiteStore(StateStore):
    def __init__(self, path: str | Path, namespace: str):
        self.path, self.namespace = Path(path), namespace
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._use_wal()
        with self._transaction() as db:
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(policy_state)")}
            if "derived" not in columns:  # a file written before derived entries existed
                db.execute("ALTER TABLE policy_state ADD COLUMN derived TEXT")

    def _use_wal(self, timeout: float = 30.0) -> None:
        """Switch the file to write-ahead logging (it stays so). The switch needs the file to itself and does
        not wait for a lock, so when parallel workers open the file together, retry."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection (a connection must not be shared by threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE"):
        db = self._db
        db.execute(f"BEGIN {mode}")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _count(self, db, name: str, by: float = 1.0) -> None:
        db.execute(ADD_TO_COUNTER, (self.namespace, name, by, by))

    # reads ---------------------------------------------------------------------------------------------------

    @translate_errors(sqlite3.Error)
    def version(self) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE router = ? AND name = 'version'",
                               (self.namespace,)).fetchone()
        return int(row[0]) if row else 0

    @translate_errors(sqlite3.Error)
    def snapshot(self) -> Snapshot:
        with self._transaction("DEFERRED") as db:  # one consistent read
            version = db.execute("SELECT value FROM counters WHERE router = ? AND name = 'version'",
                                 (self.namespace,)).fetchone()
            rows = db.execute("SELECT context, state, derived FROM policy_state WHERE router = ?",
                              (self.namespace,)).fetchall()
            health = db.execute("SELECT arm, health FROM health WHERE router = ?", (self.namespace,)).fetchall()
        states, derived = {}, {}
        for context, state, extra in rows:
            states[context] = json.loads(state)
            if extra:
                extra = json.loads(extra)
                if extra.get("state_checksum") == state_checksum(state):
                    derived[context] = extra
        return Snapshot(int(version[0]) if version else 0, states, derived,
                        {arm: ArmHealth(**json.loads(text)) for arm, text in health})

    @translate_errors(sqlite3.Error)
    def decision(self, decision_id: str) -> Decision | None:
        row = self._db.execute("SELECT decision FROM decisions WHERE router = ? AND decision_id = ?",
                               (self.namespace, decision_id)).fetchone()
        return Decision.from_json(row[0]) if row else None

    @translate_errors(sqlite3.Error)
    def outcome(self, request_id: str) -> Outcome | None:
        row = self._db.execute("SELECT outcome FROM outcomes WHERE router = ? AND request_id = ?",
                               (self.namespace, request_id)).fetchone()
        return Outcome.from_json(row[0]) if row else None

    @translate_errors(sqlite3.Error)
    def counters(self) -> dict[str, float]:
        rows = self._db.execute("SELECT name, value FROM counters WHERE router = ?", (self.namespace,))
        return dict(rows.fetchall())

    @translate_errors(sqlite3.Error)
    def pending_count(self) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE router = ? AND name = 'pending'",
                               (self.namespace,)).fetchone()
        return int(row[0]) if row else 0

    # writes --------------------------------------------------------------------------------------------------

    @translate_errors(sqlite3.Error)
    def apply_batch(self, operations: list[Operation], derive: Derive | None = None) -> list:
        batch = _Batch()
        results = []
        with self._transaction() as db:
            # a run of decisions, rewards or outcomes is written with a few statements, not several per row
            for kind, run in groupby(operations, key=type):
                run = list(run)
                if kind is RecordDecision:
                    results += self._record_decisions(db, [operation.decision for operation in run])
                    continue
                if kind is RecordOutcome:
                    results += self._record_outcomes(db, [operation.outcome for operation in run], batch)
                    continue
                if kind is ApplyFeedback:
                    results += self._apply_feedbacks(db, run, batch)
                    continue
                for operation in run:
                    db.execute("SAVEPOINT operation")
                    effects = _Batch()
                    try:
                        results.append(self._apply(db, operation, batch, effects))
                        db.execute("RELEASE operation")
                        batch.merge(effects)
                    except Exception as error:  # undo this operation only; the others commit
                        db.execute("ROLLBACK TO operation")
                        db.execute("RELEASE operation")
                        results.append(error)
            self._write_states(db, batch, derive)
            if batch.changed:
                batch.counts["version"] += 1
            db.executemany(ADD_TO_COUNTER, [(self.namespace, name, n, n) for name, n in batch.counts.items() if n])
        return results

    def _write_states(self, db, batch: _Batch, derive: Derive | None) -> None:
        """Each policy state the batch changed, written once, with what ``derive`` makes of it."""
        for context, state in batch.states.items():
            if context not in batch.changed:
                continue
            text = json.dumps(state)
            derived = derive(context, state) if derive else None
            extra = {**derived, "state_checksum": state_checksum(text)} if derived else None
            db.execute("INSERT OR REPLACE INTO policy_state VALUES (?, ?, ?, ?)",
                       (self.namespace, context, text, json.dumps(extra) if extra else None))

    def _apply(self, db, operation: Operation, batch: _Batch, effects: _Batch):
        """One operation inside the batch's transaction. What it changes in memory (states, counters) goes to
        ``effects``, which join the batch only if the operation succeeds."""
        if isinstance(operation, UpdateHealth):
            effects.changed.add(None)
            return self._update_health(db, operation.arm, operation.update)
        if isinstance(operation, Expire):
            return self._expire(db, operation.now, operation.ttl)
        raise TypeError(f"unknown store operation {operation!r}")

    def _rows_by_id(self, db, select: str, ids: list[str]) -> list[tuple]:
        """``select ... IN`` (its first parameter this store's namespace) for ``ids``, in chunks: SQLite caps the
        number of bound parameters."""
        rows = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows += db.execute(f"{select} ({','.join('?' * len(chunk))})", (self.namespace, *chunk)).fetchall()
        return rows

    def _record_decisions(self, db, decisions: list[Decision]) -> list[Decision]:
        """Insert the decisions whose ids are new; each result is the decision its id keeps (the first)."""
        kept: dict[str, Decision] = {}
        ids = list(dict.fromkeys(d.decision_id for d in decisions))
        rows = self._rows_by_id(db, "SELECT decision FROM decisions WHERE router = ? AND decision_id IN", ids)
        kept.update((d.decision_id, d) for d in map(Decision.from_json, (row[0] for row in rows)))
        new = []
        for decision in decisions:
            if decision.decision_id not in kept:
                kept[decision.decision_id] = decision
                new.append(decision)
        db.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, NULL)",
                       [(self.namespace, d.decision_id, d.to_json(), d.created) for d in new])
        counts = Counter(f"decisions:{d.arm}" for d in new)
        counts["pending"] = len(new)
        db.executemany(ADD_TO_COUNTER, [(self.namespace, name, n, n) for name, n in counts.items() if n])
        return [kept[d.decision_id] for d in decisions]

    def _apply_feedbacks(self, db, operations: list[ApplyFeedback], batch: _Batch) -> list:
        """A run of rewards: their decisions read with one statement, each reward applied in order in memory (a
        repeated id in the run sees the reward before it), then written with a few statements. An operation that
        raises changes nothing and its result is the error."""
        known: dict[str, tuple[Decision, float | None]] = {}
        ids = list(dict.fromkeys(op.decision_id for op in operations))
        rows = self._rows_by_id(db, "SELECT decision_id, decision, reward FROM decisions WHERE router = ? AND "
                                    "decision_id IN", ids)
        known.update((i, (Decision.from_json(text), reward)) for i, text, reward in rows)
        health: dict[str, ArmHealth] = {}  # arm -> its health as this run has it
        changed_health: set[str] = set()
        rewarded, results = [], []
        for op in operations:
            decision, previous = known.get(op.decision_id, (None, None))
            outcome = feedback_outcome(decision, previous, op.reward, op.now, op.ttl)
            if outcome is FeedbackOutcome.APPLIED:
                try:
                    state = op.update(self._state(db, batch, decision.context), decision)
                    before = health.get(decision.arm) or self._health(db, decision.arm)
                    after = op.health(before) if op.health is not None else before
                except Exception as error:  # this reward only: nothing of it is written
                    results.append(error)
                    continue
                batch.states[decision.context] = state
                batch.changed.add(decision.context)
                known[op.decision_id] = (decision, op.reward)
                rewarded.append((op.reward, self.namespace, op.decision_id))
                batch.counts["pending"] -= 1
                health[decision.arm] = after
                if after != before:
                    changed_health.add(decision.arm)
                    batch.changed.add(None)
            batch.counts[f"feedback:{outcome.value}"] += 1
            results.append((outcome, decision))
        db.executemany("UPDATE decisions SET reward = ? WHERE router = ? AND decision_id = ?", rewarded)
        db.executemany("INSERT OR REPLACE INTO health VALUES (?, ?, ?)",
                       [(self.namespace, arm, json.dumps(asdict(health[arm]))) for arm in sorted(changed_health)])
        return results

    def _record_outcomes(self, db, outcomes: list[Outcome], batch: _Batch) -> list[OutcomeStatus]:
        """Insert the outcomes whose ids are new; each result is its status against the outcome its id keeps."""
        kept: dict[str, Outcome] = {}
        ids = list(dict.fromkeys(o.request_id for o in outcomes))
        rows = self._rows_by_id(db, "SELECT outcome FROM outcomes WHERE router = ? AND request_id IN", ids)
        kept.update((o.request_id, o) for o in map(Outcome.from_json, (row[0] for row in rows)))
        statuses, new = [], []
        for outcome in outcomes:
            status = outcome_status(kept.get(outcome.request_id), outcome)
            if status is OutcomeStatus.RECORDED:
                kept[outcome.request_id] = outcome
                new.append(outcome)
                batch.counts.update(outcome.counts())
            statuses.append(status)
        db.executemany("INSERT INTO outcomes VALUES (?, ?, ?, ?)",
                       [(self.namespace, o.request_id, o.to_json(), o.created) for o in new])
        return statuses

    def _state(self, db, batch: _Batch, context: str) -> dict | None:
        """A context's policy state as the batch has it so far (read once per batch)."""
        if context not in batch.states:
            row = db.execute("SELECT state FROM policy_state WHERE router = ? AND context = ?",
                             (self.namespace, context)).fetchone()
            batch.states[context] = json.loads(row[0]) if row else None
        return batch.states[context]

    def _health(self, db, arm: str) -> ArmHealth:
        row = db.execute("SELECT health FROM health WHERE router = ? AND arm = ?", (self.namespace, arm)).fetchone()
        return ArmHealth(**json.loads(row[0])) if row else ArmHealth()

    def _update_health(self, db, arm: str, update) -> ArmHealth:
        health = update(self._health(db, arm))
        db.execute("INSERT OR REPLACE INTO health VALUES (?, ?, ?)", (self.namespace, arm, json.dumps(asdict(health))))
        return health

    def _expire(self, db, now: float, ttl: float) -> int:
        pending = db.execute("SELECT COUNT(*) FROM decisions WHERE router = ? AND created < ? AND reward IS NULL",
                             (self.namespace, now - ttl)).fetchone()[0]
        self._count(db, "pending", -pending)
        return sum(db.execute(f"DELETE FROM {table} WHERE router = ? AND created < ?",
                              (self.namespace, now - ttl)).rowcount for table in ("decisions", "outcomes"))

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
