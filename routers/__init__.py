"""The routers (Thompson sampling, regimes) and the outcomes model, as MLServer runtimes: their request handlers,
settings and metrics, the pure bandit math (``bandit/``), and the state stores (``stores/``)."""
