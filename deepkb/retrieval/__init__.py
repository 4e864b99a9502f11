"""Retrieval: hybrid search and fusion, the evidence excerpts, and the abstain decision."""
