# Two images from one build. Seldon's agent downloads each Model's artifacts from its storageUri; the images carry
# only code. Not built here: the development machine has no container engine.
#
#   docker build --target serving -t ghcr.io/seldon-market-ab/mlserver:0.1.0 .  # the Server (manifests/base/server.yaml)
#   docker build --target tools -t ghcr.io/seldon-market-ab/tools:0.1.0 .       # the rollout and retraining Jobs and
#                                                                                # the alert receiver (market-ab)

# The wheel: every folder setup.cfg maps under seldon_market_ab.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY seldon_market_ab seldon_market_ab
COPY runtimes runtimes
COPY routers routers
COPY detectors detectors
COPY training training
COPY local_seldon local_seldon
COPY analysis analysis
COPY rollouts rollouts
COPY retraining retraining
COPY loadtest loadtest
COPY cli cli
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# The serving install: the official MLServer image with the runtimes, the routers on SQLite or Redis and the drift
# detector; no training, plotting, market-data or load-testing library.
FROM seldonio/mlserver:1.7.1-slim AS serving
USER root
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir "$(ls /wheels/seldon_market_ab-*.whl)[drift,redis]"
USER 1000

# The tools on top: the market-ab command with what its subcommands use, and the Kubernetes client.
FROM serving AS tools
USER root
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir "$(ls /wheels/seldon_market_ab-*.whl)[tools,redis,kubernetes]"
USER 1000
