"""Router state stores: one contract (``base.StateStore``), SQLite by default, Redis for several replicas."""

from .base import STORE_SCHEMES, ArmHealth, Decision, FeedbackOutcome, StateStore, StateUpdate, open_store

__all__ = ["STORE_SCHEMES", "ArmHealth", "Decision", "FeedbackOutcome", "StateStore", "StateUpdate", "open_store"]
