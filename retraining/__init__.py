"""Retraining (``market-ab retrain``): a new version of a model trained up to a cut, compared out of sample with the
serving one, registered beside it, and rolled out by ``market-ab rollout``; on a cluster, a Job per drift alert."""
