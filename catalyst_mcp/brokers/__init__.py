"""Broker adapters: the simulated exchange (the default) and real brokers."""
