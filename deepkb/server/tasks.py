"""Front-ends' housekeeping requests (Open WebUI's title, tags and follow-up tasks) sent to model `deepkb`.

Open WebUI sends them, after every answer, to the chat's own model unless a task model is set; its Stop button
stays up until all of them are answered. Through retrieval and a CPU model each would wait its turn behind the
one generation at a time and take as long as an answer, so deepkb answers them at once, without retrieval and
without the model, in the JSON shape the prompt asks for. `deepkb-norag` answers them with the model.
"""

from __future__ import annotations

import json
import re

TASK_HEAD = "### Task:"
_HISTORY = re.compile(r"<chat_history>\s*(.*?)\s*</chat_history>", re.DOTALL)
_USER_LINE = re.compile(r"^USER:\s*(.+)$", re.MULTILINE)
_KEYS = ("follow_ups", "title", "tags", "queries")  # follow_ups first: its prompt mentions titles nowhere
TITLE_WORDS = 6


def frontend_task(question: str) -> str | None:
    """The JSON key a front-end's task prompt asks for (`title`, `tags`, `follow_ups`, `queries`); None when the
    text is a real question."""
    text = question.lstrip()
    if not text.startswith(TASK_HEAD) or "<chat_history>" not in text:
        return None
    output = text.split("### Output:", 1)[-1]
    for key in _KEYS:
        if f'"{key}"' in output:
            return key
    return None


def task_reply(key: str, question: str) -> str:
    """The task's answer as raw JSON: a title from the first question, no tags beyond General, no suggestions."""
    if key == "title":
        history = _HISTORY.search(question)
        asked = _USER_LINE.search(history.group(1)) if history else None
        words = (asked.group(1) if asked else "").strip().rstrip("?!.").split()
        title = " ".join(words[:TITLE_WORDS]) + (" …" if len(words) > TITLE_WORDS else "")
        return json.dumps({"title": title or "Knowledge base"}, ensure_ascii=False)
    if key == "tags":
        return json.dumps({"tags": ["General"]})
    return json.dumps({key: []})
