"""Offline: real market data, sequences and splits, training, export and evaluation of the LSTM variants, and the
drift detector's reference."""
