"""Thompson-sampling and regime routers (MLServer runtimes)."""
