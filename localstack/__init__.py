"""Runs the model repository on one machine: an MLServer process and a client for it."""
