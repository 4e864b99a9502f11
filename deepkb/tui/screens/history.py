"""Saved conversations: Enter resumes one, r renames, d deletes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from deepkb.tui.screens.dialogs import ConfirmScreen, PromptScreen


@dataclass(frozen=True)
class Saved:
    """A saved conversation as the list shows it."""

    id: str
    title: str
    detail: str  # when, how many questions


class HistoryScreen(ModalScreen[str | None]):
    """Dismisses with the id of the conversation to resume, or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="history-box"):
            yield Label("Conversations: Enter resumes, r renames, d deletes", id="history-title")
            yield OptionList(id="history-list")
            yield Footer()

    def on_mount(self) -> None:
        self.refresh_list()

    def refresh_list(self) -> None:
        listing = self.query_one(OptionList)
        saved: list[Saved] = self.app.saved_conversations()
        highlighted = listing.highlighted
        listing.clear_options()
        listing.add_options(Option(Text.assemble(s.title, ("\n" + s.detail, "dim")), id=s.id) for s in saved)
        if saved:
            listing.highlighted = min(highlighted or 0, len(saved) - 1)
        else:
            listing.add_option(Option("No saved conversations yet.", disabled=True))
        listing.focus()

    def _current(self) -> str | None:
        listing = self.query_one(OptionList)
        if listing.highlighted is None:
            return None
        option = listing.get_option_at_index(listing.highlighted)
        return None if option.disabled else option.id

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.dismiss(event.option.id)

    def action_rename(self) -> None:
        conversation = self._current()
        if conversation is None:
            return

        def renamed(title: str | None) -> None:
            if title:
                self.app.rename_conversation(conversation, title)
                self.refresh_list()

        self.app.push_screen(PromptScreen("New title:"), renamed)

    def action_delete(self) -> None:
        conversation = self._current()
        if conversation is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.delete_conversation(conversation)
                self.refresh_list()

        self.app.push_screen(ConfirmScreen("Delete this conversation?", yes="Delete"), confirmed)
