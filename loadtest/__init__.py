"""Load and measurements against running servers: Locust traffic, gRPC and REST load loops, the serving benchmarks
(against an echo runtime) and profile, the fuzz suite, and the conformance suite of other people's clients."""
