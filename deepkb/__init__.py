"""deepkb: a local knowledge base that answers from your own documents with citations."""

__version__ = "0.1.0"
