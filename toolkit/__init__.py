"""Tooling around the handler library: archives, preflight, clients, server lifecycle, benchmarks."""
