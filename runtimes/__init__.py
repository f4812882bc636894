"""MLServer runtimes serving the TorchScript LSTMs, and what they share with training."""
