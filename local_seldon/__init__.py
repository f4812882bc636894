"""Seldon Core v2 on one machine (``market-ab serve``): the manifests checked as Seldon checks them, MLServer on the
model repository, a gateway running their Pipelines and Experiments over REST and gRPC, an admin port, and
Prometheus and Alertmanager beside them."""
