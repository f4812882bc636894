"""Runs the model repository on one machine: ``mlserver start`` on free loopback ports (the gateway joins later)."""
