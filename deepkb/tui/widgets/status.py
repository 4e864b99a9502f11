"""The status line: the model and where it runs, what the knowledge base holds, watch state, the last answer's speed."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static


class StatusLine(Static):
    """One line at the bottom; each part is a reactive the app sets from its workers' messages."""

    model = reactive("model: loading…")
    kb = reactive("")
    watch = reactive("")
    speed = reactive("")
    think = reactive(True)
    thinks = reactive(True)  # False for a model that never reasons: then "think on/off" would mean nothing

    def render(self) -> Content:
        parts = [self.model, self.kb]
        if self.watch:
            parts.append(self.watch)
        if self.thinks:
            parts.append("think on" if self.think else "think off")
        if self.speed:
            parts.append(self.speed)
        return Content(" · ".join(p for p in parts if p))
