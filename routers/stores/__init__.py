"""Router state and outcome stores: one contract (``base.StateStore``), SQLite by default, Redis for several
replicas, and the writer thread that applies their writes in group commits (``writer.StoreWriter``)."""

from .base import (
    STORE_SCHEMES,
    ApplyFeedback,
    ArmHealth,
    Decision,
    Expire,
    FeedbackOutcome,
    Outcome,
    OutcomeStatus,
    RecordDecision,
    RecordOutcome,
    Snapshot,
    StateStore,
    StateUpdate,
    StoreUnavailable,
    UpdateHealth,
    open_store,
)
from .writer import StoreWriter

__all__ = ["STORE_SCHEMES", "ApplyFeedback", "ArmHealth", "Decision", "Expire", "FeedbackOutcome", "Outcome",
           "OutcomeStatus", "RecordDecision", "RecordOutcome", "Snapshot", "StateStore", "StateUpdate",
           "StoreUnavailable", "StoreWriter", "UpdateHealth", "open_store"]
