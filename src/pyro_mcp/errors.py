"""The error kinds every surface shows as one clear line (CLI ``[error] …``, MCP tool error).

Validation and not-found problems are ``ValueError``s; state and capability problems are
``RuntimeError``s, as the public contract says. Nothing else should reach a user.
"""

from __future__ import annotations


class PyroError(Exception):
    """Base of every error we raise on purpose."""


class ValidationError(PyroError, ValueError):
    """Bad input: a value out of range, an unknown name, a path that escapes."""


class NotFoundError(ValidationError):
    """A VM, workspace, environment or file that does not exist."""


class StateError(PyroError, RuntimeError):
    """The request is valid but the object is not in a state that allows it."""


class EngineUnavailable(PyroError, RuntimeError):
    """No engine (or not the requested one) can run a sandbox on this host."""


class SandboxError(PyroError, RuntimeError):
    """The sandbox failed to boot, crashed, or its agent failed."""


class BuildError(PyroError, RuntimeError):
    """Building an environment failed."""
