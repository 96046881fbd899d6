"""Sandbox engines: one interface, several ways to boot an environment in isolation."""

# What --engine / PYRO_ENGINE accept (engines.detect maps them to concrete engines).
ENGINE_CHOICES = ("auto", "gvisor", "qemu")
