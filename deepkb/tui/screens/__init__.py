"""The chat's screens: the conversation, a source's full passage, the history, help and confirmation."""
