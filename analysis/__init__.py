"""Analyses and reports: the A/B analysis and its calibration, the demo's report (experiments, rollouts, retraining,
live metrics), the measured evidence for the routers, the drift detector and retraining, from real data, and how
large a stale-features fault is."""
