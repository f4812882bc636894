"""Where a rollout moves the weights: the local stack's admin port (``market-ab serve --admin-port``).

A target reads the experiment's spec and writes it back with the baseline's and candidate's weights changed;
everything else in the spec (the default, the mirror, other candidates) stays as it is.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

DEFAULT_ADMIN_URL = "http://127.0.0.1:9002"


class TargetError(RuntimeError):
    """The experiment could not be read or changed; the message says why."""


class Conflict(TargetError):
    """Somebody else changed the experiment between our read and our write."""


KEEP = object()  # leave the experiment's mirror as it is


def with_weights(spec: dict, weights: dict[str, int], mirror=KEEP) -> dict:
    """``spec`` with the named candidates' weights replaced, and its mirror set (a ``{name, percent}``), removed
    (None) or kept.

    >>> with_weights({"default": "a", "candidates": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]},
    ...              {"a": 90, "b": 10})["candidates"]
    [{'name': 'a', 'weight': 90}, {'name': 'b', 'weight': 10}]
    """
    names = [c["name"] for c in spec.get("candidates") or []]
    missing = sorted(set(weights) - set(names))
    if missing:
        raise TargetError(f"the experiment has no candidate {', '.join(missing)}; its candidates are "
                          f"{', '.join(names) or 'none'}")
    out = {**spec, "candidates": [{**c, "weight": weights.get(c["name"], c["weight"])} for c in spec["candidates"]]}
    if mirror is None:
        out.pop("mirror", None)
    elif mirror is not KEEP:
        out["mirror"] = mirror
    return out


def candidate_weights(spec: dict) -> dict[str, int]:
    return {c["name"]: int(c["weight"]) for c in spec.get("candidates") or []}


class LocalAdmin:
    """The admin port of ``market-ab serve``."""

    def __init__(self, experiment: str, url: str = DEFAULT_ADMIN_URL, timeout: float = 10.0):
        self.experiment, self.timeout = experiment, timeout
        self.url = f"{url.rstrip('/')}/admin/experiments/{experiment}"

    def __str__(self) -> str:
        return self.url

    def spec(self) -> dict:
        return self._call("GET")["spec"]

    def set_weights(self, weights: dict[str, int], mirror=KEEP) -> dict:
        """Read the spec, then write it back changed, only if nobody changed it in between (else read again)."""
        for attempt in range(3):
            current = self._call("GET")
            try:
                return self._call("PUT", with_weights(current["spec"], weights, mirror),
                                  current["generation"])["spec"]
            except Conflict:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _call(self, method: str, body: dict | None = None, generation: int | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **({"If-Match": str(generation)} if generation else {})}
        request = urllib.request.Request(self.url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read())["error"]
            except (ValueError, KeyError):
                message = error.reason
            raise (Conflict if error.code == 409 else TargetError)(f"{method} {self.url}: {error.code} {message}") \
                from None
        except (urllib.error.URLError, OSError) as error:
            raise TargetError(f"{method} {self.url}: {getattr(error, 'reason', error)} (is market-ab serve running "
                              "with its admin port?)") from None
