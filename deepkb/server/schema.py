"""Request models, named after OpenAI's (chat completions) plus deepkb's search. Responses are written in one
place, deepkb/server/render.py, in OpenAI's shapes (tests read them back with the `openai` client)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MODEL_RAG = "deepkb"  # retrieval + answer with citations
MODEL_NORAG = "deepkb-norag"  # the model alone (front-ends' title and tag tasks)
MODELS = (MODEL_RAG, MODEL_NORAG)


# requests -----------------------------------------------------------------------------------------------------
class ContentPart(BaseModel):
    """One part of a multi-part message; only text parts carry anything deepkb reads."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text, parts joined."""
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions; fields deepkb does not use (tools, logprobs, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int = Field(default=1, ge=1, le=1)
    user: str | None = None


class SearchRequest(BaseModel):
    """POST /v1/search: the hits `deepkb search --json` prints."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(default=5, ge=1, le=100)
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    in_: list[str] | None = Field(default=None, alias="in", max_length=64)
    """Only documents at or below these absolute paths (files or folders), as `deepkb search --in`."""
    type: list[str] | str | None = Field(default=None, max_length=64)
    """Only these kinds of file (`["pdf", "md"]` or `"pdf,md"`), as `deepkb search --type`."""

    @field_validator("in_")
    @classmethod
    def _absolute(cls, value: list[str] | None) -> list[str] | None:
        for path in value or ():
            if not path.startswith("/"):
                raise ValueError(f"'in' takes absolute paths; {path!r} is relative")
        return value

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is empty")
        return value
