"""Curated environments: the catalog, how each is built, and the local cache of built ones."""
