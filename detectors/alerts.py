"""Verdict changes POSTed as JSON to a webhook, from a background thread that never holds up inference.

Debounced: at most one event per ``debounce`` seconds; a change that arrives meanwhile waits, and only the
latest state is sent (a verdict that flips and flips back within the interval sends nothing new). Each event
is retried with exponential back-off; an event that still fails is logged and counted, never dropped silently.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

logger = logging.getLogger(__name__)


class WebhookAlerts:
    def __init__(self, url: str, debounce: float, retries: int, timeout: float,
                 count: Callable[[str], None] = lambda outcome: None, first_backoff: float = 0.5):
        self.url, self.debounce, self.retries, self.timeout = url, debounce, retries, timeout
        self.count, self.first_backoff = count, first_backoff
        self._condition = threading.Condition()
        self._pending: dict | None = None
        self._last_sent_state: bool | None = None
        self._last_sent_at = float("-inf")
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="drift-webhook", daemon=True)
        self._thread.start()

    def verdict_changed(self, event: dict) -> None:
        """Queue ``event`` (which has a boolean ``drift``); returns at once."""
        with self._condition:
            self._pending = event
            self._condition.notify()

    def close(self, timeout: float = 10.0) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    if self._pending is not None:
                        logger.error("drift webhook: shutting down with an unsent event %s", self._pending)
                        self.count("dropped")
                    return
                wait = self._last_sent_at + self.debounce - time.monotonic()
                if wait > 0:  # debounce: let later changes replace this one
                    self._condition.wait(wait)
                    continue
                event, self._pending = self._pending, None
            if event["drift"] == self._last_sent_state:
                continue  # flipped and flipped back within the interval: nothing new to say
            if self._send(event):
                self._last_sent_state = event["drift"]
            self._last_sent_at = time.monotonic()

    def _send(self, event: dict) -> bool:
        body = json.dumps(event).encode()
        backoff = self.first_backoff
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        self.count("sent")
                        return True
            except (urllib.error.URLError, OSError, ValueError) as error:
                logger.warning("drift webhook: attempt %d of %d failed: %s", attempt + 1, self.retries + 1, error)
            if attempt < self.retries:
                with self._condition:  # back off, but give up waiting if we are shutting down
                    if self._stopping:
                        break
                    self._condition.wait(backoff)
                backoff *= 2
        logger.error("drift webhook: event not delivered after %d attempts: %s", self.retries + 1, event)
        self.count("failed")
        return False
