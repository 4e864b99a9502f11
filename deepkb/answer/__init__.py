"""Answering: pack the prompt, stream the model's answer, resolve and check its citations."""
