"""The ``pyro`` command line, derived from the operation declarations."""

from .main import main

__all__ = ["main"]
