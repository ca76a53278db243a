"""Elasticsearch and OpenSearch: pure translation of documents and `PersonaQuery` into request bodies.

Nothing here does I/O: every function returns `Request` records, which `backends/cluster.py` sends (or
`--dry-run` prints). Version and licence differences live in `capabilities.py`, in one table.
"""
