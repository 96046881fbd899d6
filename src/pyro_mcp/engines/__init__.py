"""Sandbox engines: one interface, several ways to boot an environment in isolation."""
