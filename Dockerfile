# The image of the Seldon Server in manifests/base/server.yaml: the official MLServer image with this package
# (the runtimes, routers and drift detector, and the rollout loop) installed. Seldon's agent downloads each Model's artifacts from its
# storageUri; the image carries only code. Not built here: the development machine has no container engine.
#
#   docker build -t ghcr.io/seldon-market-ab/mlserver:0.1.0 .
FROM seldonio/mlserver:1.7.1-slim

USER root
COPY --chown=1000:1000 setup.cfg pyproject.toml README.md /opt/seldon-market-ab/
COPY --chown=1000:1000 seldon_market_ab /opt/seldon-market-ab/seldon_market_ab
COPY --chown=1000:1000 runtimes /opt/seldon-market-ab/runtimes
COPY --chown=1000:1000 routers /opt/seldon-market-ab/routers
COPY --chown=1000:1000 detectors /opt/seldon-market-ab/detectors
COPY --chown=1000:1000 training /opt/seldon-market-ab/training
COPY --chown=1000:1000 local_seldon /opt/seldon-market-ab/local_seldon
COPY --chown=1000:1000 analysis /opt/seldon-market-ab/analysis
COPY --chown=1000:1000 rollouts /opt/seldon-market-ab/rollouts
COPY --chown=1000:1000 retraining /opt/seldon-market-ab/retraining
COPY --chown=1000:1000 loadtest /opt/seldon-market-ab/loadtest
COPY --chown=1000:1000 market_ab /opt/seldon-market-ab/market_ab
# [kubernetes]: manifests/rollouts runs `market-ab rollout run --kubernetes` in this image
RUN pip install --no-cache-dir '/opt/seldon-market-ab[redis,kubernetes]'
USER 1000
