"""Every public operation, declared once.

An operation is a method of the SDK class ``Pyro``, decorated with :func:`operation`. Its
signature (types, defaults, ``Param`` metadata) and the decorator's arguments are the single
declaration from which the CLI command and the MCP tool are derived.
"""
