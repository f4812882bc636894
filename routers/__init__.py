"""The routers (Thompson sampling, regimes) and the outcomes model, as MLServer runtimes, with their settings and
state stores."""
