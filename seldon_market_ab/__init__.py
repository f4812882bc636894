"""The shared core of seldon-market-ab: what the runtimes, routers, detectors and tools all use.

Features, regimes and scaling (one definition for training and serving), the Open Inference
Protocol helpers with their error type, metrics helpers, settings base classes and the one
module that touches MLServer's private details. It imports nothing else of ours.
"""
