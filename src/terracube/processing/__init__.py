"""The one path that runs a graph: build services, validate once, evaluate, write outputs."""
