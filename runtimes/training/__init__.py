"""Training and evaluation of the LSTM variants served by ``runtimes.lstm``."""
