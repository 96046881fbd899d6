"""The ``pyro`` command line, derived from the operation declarations.

``main`` is the console script: it hands the command to a warm helper when one runs
(``launch.py``), else runs it here (``main.py``).
"""

from .launch import main

__all__ = ["main"]
