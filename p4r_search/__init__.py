"""p4r-search: Persona4Rec persona recommendations for Elasticsearch, OpenSearch and an embedded engine."""

__version__ = "0.1.0"
