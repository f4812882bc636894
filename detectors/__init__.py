"""Drift detection runtime on alibi-detect."""
