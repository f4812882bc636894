"""Retraining: a new version of a model trained up to a cut, compared out of sample with the serving one,
registered beside it, and rolled out by the autopilot (``market-ab retrain``)."""
