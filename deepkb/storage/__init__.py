"""The storage layer: the SQLite catalog (the truth), the HNSW vectors (a cache), their errors."""
