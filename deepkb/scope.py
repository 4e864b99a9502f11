"""Scope: a search limited to some folders or files (`--in`) and some kinds of file (`--type`).

The scope is applied inside retrieval, never by dropping hits after the top k: the keyword side joins its FTS5
query to the documents in scope, the dense side asks HNSW only for vectors of chunks in scope (a filter, or an
exact scan when the scope holds few vectors). A scope therefore returns k hits whenever k chunks lie in it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepkb.errors import UsageError

# A --type name -> the document kinds it selects (documents.kind, what the loader recorded).
KIND_TYPES: dict[str, tuple[str, ...]] = {
    "pdf": ("pdf",),
    "md": ("markdown",),
    "markdown": ("markdown",),
    "txt": ("text",),
    "text": ("text",),
    "html": ("html",),
    "docx": ("docx",),
    "odt": ("odt",),
    "epub": ("epub",),
    "email": ("email",),
    "eml": ("email",),
    "mbox": ("email",),
    "mail": ("email",),
    "man": ("man",),
}


@dataclass(frozen=True)
class Scope:
    """Where a search looks: documents at or below one of `paths` (absolute, resolved) and of one of `types`.

    An empty `paths` means everywhere; an empty `types` means every kind. A type that is not a kind name above is a
    file extension (`py`, `rst`): source code and other text files are kept apart by their extension."""

    paths: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.paths or self.types)

    def describe(self) -> str:
        """`in ~/notes, type pdf`: how the CLI and the TUI say what the search was limited to."""
        parts = []
        if self.paths:
            parts.append("in " + ", ".join(self.paths))
        if self.types:
            parts.append("type " + ",".join(self.types))
        return "; ".join(parts)

    def sql(self, column: str = "path", kind: str = "kind") -> tuple[str, list]:
        """A WHERE condition on the documents table (`path` and `kind` columns) and its parameters."""
        clauses: list[str] = []
        params: list = []
        if self.paths:
            either = []
            for p in self.paths:
                prefix = p.rstrip("/") + "/"
                either.append(f"({column} = ? OR substr({column}, 1, ?) = ?)")
                params += [p, len(prefix), prefix]
            clauses.append("(" + " OR ".join(either) + ")")
        if self.types:
            kinds = sorted({k for t in self.types for k in KIND_TYPES.get(t, ())})
            exts = sorted({"." + t for t in self.types if t not in KIND_TYPES})
            either = []
            if kinds:
                either.append(f"{kind} IN ({','.join('?' * len(kinds))})")
                params += kinds
            for ext in exts:
                either.append(f"lower(substr({column}, -?)) = ?")
                params += [len(ext), ext]
            clauses.append("(" + " OR ".join(either) + ")")
        return (" AND ".join(clauses) or "1"), params


def parse_types(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """`pdf,md` (or a list of such strings) -> ("pdf", "md"); a leading dot is dropped, `.PDF` is `pdf`."""
    if text is None:
        return ()
    items = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        for raw in str(item).split(","):
            name = raw.strip().lower().lstrip(".")
            if not name:
                continue
            if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 16:
                raise UsageError(f"--type {raw.strip()!r} is not a file type; use names such as pdf,md,docx,email,man.")
            if name not in names:
                names.append(name)
    return tuple(names)


def make_scope(
    paths: Sequence[str | os.PathLike] | None = None,
    types: str | Iterable[str] | None = None,
    base: Path | None = None,
    must_exist: bool = False,
) -> Scope:
    """A Scope from what a user typed: paths made absolute (against `base`, else the working directory) and
    resolved like ingested roots are, so `--in ./notes` and a link to it both match the stored paths."""
    resolved: list[str] = []
    for raw in paths or ():
        if not str(raw).strip():
            continue
        path = Path(raw).expanduser()
        if not path.is_absolute():
            if base is None:
                path = path.absolute()
            else:
                path = base / path
        if must_exist and not path.exists():
            raise UsageError(f"--in {raw}: no such file or folder.")
        text = str(path.resolve())
        if text not in resolved:
            resolved.append(text)
    return Scope(tuple(resolved), parse_types(types))


def no_match_message(scope: Scope) -> str:
    """What to tell the user when a scope holds no ingested document."""
    return f"no ingested document lies {scope.describe()}; check the path and type (`deepkb documents` lists them)."
