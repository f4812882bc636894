"""Offline evidence and reports computed from real data: the router evidence (and, later, the A/B report)."""
