"""The chat's widgets: conversation, sources pane, input with history, status line."""
