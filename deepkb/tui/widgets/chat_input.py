"""The question input: Enter sends, Up/Down walk through earlier questions like a shell."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class ChatInput(Input):
    """An Input that remembers what was sent; Up/Down recall it, keeping an unsent draft."""

    BINDINGS = [
        Binding("up", "history(-1)", "Earlier", show=False),
        Binding("down", "history(1)", "Later", show=False),
        Binding("tab", "screen.focus_sources", "Sources pane", show=False),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.history: list[str] = []
        self._position: int | None = None  # index into history while browsing, None when editing a draft
        self._draft = ""

    def remember(self, text: str) -> None:
        """Add a sent line to the history (not twice in a row) and stop browsing."""
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._position = None

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._position is None:
            if step > 0:
                return
            self._draft = self.value
            position = len(self.history) - 1
        else:
            position = self._position + step
        if position >= len(self.history):
            self._position = None
            self.value = self._draft
        else:
            self._position = max(position, 0)
            self.value = self.history[self._position]
        self.cursor_position = len(self.value)
