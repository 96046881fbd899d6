"""One place for the release and catalog versions."""

__version__ = "3.6.0"
CATALOG_VERSION = "3.6.0"
