"""The MLServer runtime serving the TorchScript LSTMs (``runtimes.lstm.LSTMRuntime``)."""
