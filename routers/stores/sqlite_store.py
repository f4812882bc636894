"""The default store: one SQLite file in WAL mode, shared by MLServer's parallel workers.

Every change is one ``BEGIN IMMEDIATE`` transaction (a write lock across processes)
committed with ``synchronous=FULL``, so a committed reward survives kill -9.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from .base import ArmHealth, Decision, FeedbackOutcome, StateStore, StateUpdate

SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_state (
    router TEXT NOT NULL, context TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (router, context));
CREATE TABLE IF NOT EXISTS decisions (
    router TEXT NOT NULL, decision_id TEXT NOT NULL, decision TEXT NOT NULL, created REAL NOT NULL,
    reward REAL, PRIMARY KEY (router, decision_id));
CREATE INDEX IF NOT EXISTS decisions_created ON decisions (router, created);
CREATE TABLE IF NOT EXISTS health (
    router TEXT NOT NULL, arm TEXT NOT NULL, health TEXT NOT NULL, PRIMARY KEY (router, arm));
CREATE TABLE IF NOT EXISTS counters (
    router TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (router, name));
"""


class SQLiteStore(StateStore):
    def __init__(self, path: str | Path, namespace: str):
        self.path, self.namespace = Path(path), namespace
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._transaction() as db:
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)

    @contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _count(self, db, name: str, by: float = 1.0) -> None:
        db.execute("INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (router, name) DO UPDATE SET value = value + ?",
                   (self.namespace, name, by, by))

    def load_states(self) -> dict[str, dict]:
        rows = self._db.execute("SELECT context, state FROM policy_state WHERE router = ?", (self.namespace,))
        return {context: json.loads(state) for context, state in rows}

    def record_decision(self, decision: Decision) -> Decision:
        with self._transaction() as db:
            row = db.execute("SELECT decision FROM decisions WHERE router = ? AND decision_id = ?",
                             (self.namespace, decision.decision_id)).fetchone()
            if row:
                return Decision.from_json(row[0])
            db.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, NULL)",
                       (self.namespace, decision.decision_id, decision.to_json(), decision.created))
            self._count(db, "pending")
            self._count(db, f"decisions:{decision.arm}")
        return decision

    def apply_feedback(self, decision_id: str, reward: float, now: float, ttl: float,
                       update: StateUpdate) -> tuple[FeedbackOutcome, Decision | None]:
        with self._transaction() as db:
            row = db.execute("SELECT decision, reward FROM decisions WHERE router = ? AND decision_id = ?",
                             (self.namespace, decision_id)).fetchone()
            if row is None:
                outcome, decision = FeedbackOutcome.UNKNOWN, None
            else:
                decision, previous = Decision.from_json(row[0]), row[1]
                if previous is not None:
                    outcome = FeedbackOutcome.DUPLICATE if previous == reward else FeedbackOutcome.CONFLICT
                elif now - decision.created > ttl:
                    outcome = FeedbackOutcome.EXPIRED
                else:
                    state = db.execute("SELECT state FROM policy_state WHERE router = ? AND context = ?",
                                       (self.namespace, decision.context)).fetchone()
                    new_state = update(json.loads(state[0]) if state else None, decision)
                    db.execute("INSERT OR REPLACE INTO policy_state VALUES (?, ?, ?)",
                               (self.namespace, decision.context, json.dumps(new_state)))
                    db.execute("UPDATE decisions SET reward = ? WHERE router = ? AND decision_id = ?",
                               (reward, self.namespace, decision_id))
                    self._count(db, "pending", -1)
                    outcome = FeedbackOutcome.APPLIED
            self._count(db, f"feedback:{outcome.value}")
        return outcome, decision

    def decision(self, decision_id: str) -> Decision | None:
        row = self._db.execute("SELECT decision FROM decisions WHERE router = ? AND decision_id = ?",
                               (self.namespace, decision_id)).fetchone()
        return Decision.from_json(row[0]) if row else None

    def pending_count(self) -> int:
        return int(self.counters().get("pending", 0))

    def expire(self, now: float, ttl: float) -> int:
        with self._transaction() as db:
            pending = db.execute("SELECT COUNT(*) FROM decisions WHERE router = ? AND created < ? AND reward IS NULL",
                                 (self.namespace, now - ttl)).fetchone()[0]
            self._count(db, "pending", -pending)
            return db.execute("DELETE FROM decisions WHERE router = ? AND created < ?",
                              (self.namespace, now - ttl)).rowcount

    def load_health(self) -> dict[str, ArmHealth]:
        rows = self._db.execute("SELECT arm, health FROM health WHERE router = ?", (self.namespace,))
        return {arm: ArmHealth(**json.loads(text)) for arm, text in rows}

    def update_health(self, arm: str, update: Callable[[ArmHealth], ArmHealth]) -> ArmHealth:
        with self._transaction() as db:
            row = db.execute("SELECT health FROM health WHERE router = ? AND arm = ?",
                             (self.namespace, arm)).fetchone()
            health = update(ArmHealth(**json.loads(row[0])) if row else ArmHealth())
            db.execute("INSERT OR REPLACE INTO health VALUES (?, ?, ?)",
                       (self.namespace, arm, json.dumps(asdict(health))))
        return health

    def counters(self) -> dict[str, float]:
        rows = self._db.execute("SELECT name, value FROM counters WHERE router = ?", (self.namespace,))
        return dict(rows.fetchall())

    def close(self) -> None:
        self._db.close()

