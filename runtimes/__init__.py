"""The MLServer runtime serving the TorchScript LSTMs (``lstm.LSTMRuntime``), and the same LSTM with an injected
fault for drills and the demo's faulty candidate (``faults.FaultyLSTMRuntime``)."""
