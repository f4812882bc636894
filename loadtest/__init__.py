"""Clients and load: an Open Inference Protocol client over gRPC and REST (Locust and benchmarks join later)."""
