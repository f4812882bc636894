"""Router state and outcome stores: one contract (``base.StateStore``), SQLite by default, Redis for several
replicas, and the writer thread that applies their writes in group commits (``writer.StoreWriter``).

``open_store`` lives here, above the stores, so that ``base`` knows none of them (they all import it).
"""

from pathlib import Path

from .base import (
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
    StoreUnavailableError,
    UpdateHealth,
)
from .sqlite_store import SQLiteStore
from .writer import StoreWriter

SQLITE = "sqlite:///"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
STORE_SCHEMES = (SQLITE, *REDIS_SCHEMES)


def open_store(url: str, namespace: str, base_dir: str | Path = ".") -> StateStore:
    """``sqlite:///relative.db`` (relative to ``base_dir``, the router's state directory),
    ``sqlite:////absolute/path.db`` or ``redis://host:port/db``."""
    if url.startswith(SQLITE):
        path = Path(url[len(SQLITE):])
        return SQLiteStore(path if path.is_absolute() else Path(base_dir) / path, namespace)
    if url.startswith(REDIS_SCHEMES):
        try:  # imported here: redis is an optional dependency
            from .redis_store import RedisStore
        except ImportError as error:
            raise ImportError(f"store {url.split('://')[0]}:// needs the redis client: "
                              "pip install 'seldon-market-ab[redis]'") from error
        return RedisStore(url, namespace)
    raise ValueError(f"unknown store {url!r}; expected sqlite:///path.db or redis://host:port/db")


__all__ = ["STORE_SCHEMES", "ApplyFeedback", "ArmHealth", "Decision", "Expire", "FeedbackOutcome", "Outcome",
           "OutcomeStatus", "RecordDecision", "RecordOutcome", "Snapshot", "StateStore", "StateUpdate",
           "StoreUnavailableError", "StoreWriter", "UpdateHealth", "open_store"]
