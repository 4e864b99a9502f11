"""Conversations: the chat session the shells answer through, and its saved history."""
