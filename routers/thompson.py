"""``thompson-router``: one Thompson-sampling decision per request over the configured arms."""

from .runtime import BanditRouter


class ThompsonRouter(BanditRouter):
    """All of its behaviour is the shared bandit router's (``runtime.py``, ``decisions.Decisions``), with a single
    context."""
