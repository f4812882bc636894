"""The MLServer runtime serving the TorchScript LSTMs (``seldon_market_ab.runtimes.lstm.LSTMRuntime``)."""
