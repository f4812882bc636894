"""How many requests a shared piece of work (a forward pass, a group commit) should wait for.

MLServer's gRPC server accepts one call per turn of the event loop, so concurrent requests arrive a few
hundred microseconds apart, and work that starts with the first of them almost never has company. Waiting
a fixed time for company batches well under load but delays a lone caller by the whole wait. The
estimate here waits only when recent work was shared: it expects one request (do not wait) until a
batch happens to hold more, then expects as many as the last batch that waited out its time held, and
every ``probe_every`` batches that filled before their time it expects one more, to find out whether more
company is about. The callers run a batch as soon as the expected number is in, or when their wait ends.
"""

from __future__ import annotations


class ExpectedCompany:
    def __init__(self, most: int, probe_every: int = 4):
        self.most, self.probe_every = max(1, most), probe_every
        self.expected = 1  # requests the next batch waits for; 1: it does not wait
        self._filled_early = 0

    @property
    def waits(self) -> bool:
        """Whether the next batch should wait for company at all."""
        return self.expected > 1

    def filled(self, requests: int) -> bool:
        return self.waits and requests >= self.expected

    def learn(self, requests: int, filled: bool) -> None:
        """After a batch of ``requests``: ``filled`` when it ran because it was full (expected requests, or a
        size limit), not because its wait ended."""
        if not filled:  # the wait (or the turn) ended: expect as many as came
            self.expected = min(requests, self.most)
        elif requests > 1:  # one request filling a batch by itself is no sign of company
            self._filled_early += 1
            if self._filled_early % self.probe_every == 0:
                self.expected = min(self.expected + 1, self.most)
