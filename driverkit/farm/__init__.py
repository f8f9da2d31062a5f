"""The build farm: the matrix's missing builds run as tasks of a cluster engine.

plan (pure: shards of the missing builds) -> images (the builder images with driverkit
inside, on every node) -> an engine (Docker Swarm here; Kubernetes Indexed Jobs written as
manifests) runs `driverkit matrix task` per shard -> each task builds and publishes
straight to the shared repository -> report (from the repository and the engine's task
states).
"""
