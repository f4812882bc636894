"""The LSTM classifier. Training optimises logits; the exported module returns probabilities.

Keeping the sigmoid out of ``forward`` during training matters: a sigmoid in
``forward`` trained with ``BCEWithLogitsLoss`` squashes twice and predicts "up"
for every input.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMClassifier(nn.Module):
    def __init__(self, n_features: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch]`` from scaled features ``[batch, sequence, n_features]``."""
        output, _ = self.lstm(features)
        return self.head(self.dropout(output[:, -1, :])).squeeze(-1)


class ProbabilityModel(nn.Module):
    """What is exported as TorchScript: probability that the next close is higher."""

    def __init__(self, classifier: LSTMClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(features))
