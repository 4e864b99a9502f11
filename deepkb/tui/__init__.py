"""`deepkb chat`, the terminal chat over the knowledge base (Textual, the optional `[tui]` extra)."""
