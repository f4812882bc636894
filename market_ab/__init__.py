"""The ``market-ab`` command: train, evaluate, demo."""
