"""The ingest stage: scan folders, chunk documents, sync the knowledge base with them."""
