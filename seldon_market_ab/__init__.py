"""The shared core of seldon-market-ab: what the runtimes, routers, detectors and tools all use.

Features, regimes and scaling (one definition for training and serving), the Open Inference Protocol helpers
(types, validation with its error type, tensor bytes, the binary data extension, a client), model metadata, metrics
helpers, settings base classes, how long shared work waits for company, where evidence is written, and the one
module that touches MLServer's private details. It imports nothing else of ours.
"""
