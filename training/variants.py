"""The six served variants: three general models and three regime specialists.

Specialists share the baseline architecture; their loss weights the rows of
their regime (``seldon_market_ab.regimes``) more heavily.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    regime_weights: dict = field(default_factory=dict)  # regime name -> loss weight (others 1)
    sequence_length: int = 30
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 5
    seed: int = 7


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("baseline", "2-layer LSTM, 64 units"),
        Variant("enhanced", "2-layer LSTM, 128 units, stronger regularisation",
                hidden_size=128, dropout=0.3, weight_decay=1e-4, learning_rate=5e-4),
        Variant("lightweight", "1-layer LSTM, 32 units", hidden_size=32, num_layers=1, dropout=0.0),
        Variant("robust", "baseline architecture, high-volatility rows weighted x3",
                regime_weights={"high_volatility": 3.0}),
        Variant("aggressive", "baseline architecture, bull rows weighted x3", regime_weights={"bull": 3.0}),
        Variant("conservative", "baseline architecture, bear rows weighted x3", regime_weights={"bear": 3.0}),
    )
}
