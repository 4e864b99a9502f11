"""E-mail: .eml files, Maildir messages and mbox mailboxes, one section per message.

An mbox is one file that holds many messages, so it is one document whose messages are its sections: each message
starts a section headed `subject — sender — date` (a chunk never spans two messages), and its lines are the lines of
the mailbox file, which any editor opens at the line. Incremental sync stays per file: an mbox that grew is read
again, its unchanged messages keep their chunks' vectors (equal text, equal vector).

Only what the sender wrote is indexed: text parts (HTML as its visible text), not attachments; quoted replies
(`> ` lines and the "On … wrote:" line before them, a forwarded "Original Message") and signatures (after `-- `)
are left out, since the message they quote is indexed on its own. A message that cannot be parsed is reported by
number and the others are kept.
"""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from deepkb.errors import LoadError
from deepkb.loaders.base import LoadedDocument, Unit

MAIL_EXT = {".eml", ".mbox", ".mbx"}
_FROM_LINE = re.compile(rb"^From \S+ ")
_HEADER_LINE = re.compile(rb"^[A-Za-z0-9-]{1,64}:")
_ATTRIBUTION = re.compile(r"^(On .{3,200} wrote:|.{3,160} (wrote|writes|schrieb|a écrit|escribió)( .{0,80})?:)\s*$")
_ORIGINAL = re.compile(r"^-{2,}\s*(Original Message|Forwarded message|Ursprüngliche Nachricht)\s*-{2,}\s*$", re.I)
MAX_PART_CHARS = 2_000_000  # text of one message part; the rest of a longer one is not indexed


def is_maildir_message(path: Path) -> bool:
    """A file in a Maildir's cur/ or new/ folder (beside tmp/): a message without an extension."""
    parent = path.parent
    return parent.name in ("cur", "new") and all((parent.parent / d).is_dir() for d in ("cur", "new", "tmp"))


def looks_like_mbox(head: bytes) -> bool:
    """An mbox starts with a `From sender date` line followed by headers."""
    lines = head.split(b"\n", 2)
    return len(lines) >= 2 and bool(_FROM_LINE.match(lines[0])) and bool(_HEADER_LINE.match(lines[1]))


def load_mail(data: bytes, mbox: bool) -> LoadedDocument:
    """One message (.eml, Maildir) or a whole mbox: a section per message, lines of the file."""
    lines = data.split(b"\n")
    starts = _mbox_starts(lines) if mbox else [0]
    if mbox and not starts:
        raise LoadError("not an mbox mailbox (no `From ` line starts a message)")
    units: list[Unit] = []
    failed: dict[int, str] = {}
    title = None
    for number, start in enumerate(starts, start=1):
        end = starts[number] if number < len(starts) else len(lines)
        first = start + 1 if mbox else start  # the From_ line is the mailbox's, not the message's
        try:
            message_units, subject = _message_units(lines, first, end, mbox)
        except Exception as exc:  # one malformed message must not lose the rest of the mailbox
            failed[number] = f"{type(exc).__name__}: {exc}"
            continue
        title = title or subject
        units += message_units
    return LoadedDocument(
        "email", units, title=title if not mbox else None, pages=len(starts) if mbox else None,
        failed_pages=failed, part_name="message",
    )  # fmt: skip


def _mbox_starts(lines: list[bytes]) -> list[int]:
    """Indexes of the `From ` lines that start messages: the first line, or one after a blank line."""
    return [
        i for i, line in enumerate(lines)
        if line.startswith(b"From ") and (i == 0 or not lines[i - 1].strip()) and _FROM_LINE.match(line)
    ]  # fmt: skip


def _message_units(lines: list[bytes], first: int, end: int, mbox: bool) -> tuple[list[Unit], str | None]:
    """The units of the message on lines[first:end] (0-based indexes; units count lines from 1)."""
    raw = b"\n".join(line.rstrip(b"\r") for line in lines[first:end])
    if mbox:  # mboxrd escapes body lines that start with From as >From
        raw = re.sub(rb"(?m)^>(>*From )", rb"\1", raw)
    message = BytesParser(policy=policy.default).parsebytes(raw)
    header_end = next((i for i in range(first, end) if not lines[i].strip(b"\r")), end)
    subject = _header(message, "subject")
    sender = _header(message, "from")
    date = _header(message, "date")
    heading = " — ".join(x for x in (subject or "(no subject)", sender, date) if x)
    head_text = "\n".join(f"{name}: {value}" for name, value in (("Subject", subject), ("From", sender),
                          ("To", _header(message, "to")), ("Date", date)) if value)  # fmt: skip
    units = [Unit(head_text or heading, first + 1, max(first + 1, header_end), heading=heading, boundary=True)]
    body_first, body_last = header_end + 2, end  # 1-based lines of the body
    raw_body = [lines[i].rstrip(b"\r").decode("utf-8", "replace").strip() for i in range(header_end + 1, end)]
    cursor = [0]  # where in the raw body the next part's lines are looked for
    seen: set[str] = set()  # a text the message holds twice (a part and its copy in a forwarded part) counts once
    for text in _body_texts(message):
        for unit in _paragraphs(_own_lines(text), raw_body, body_first, body_last, heading, cursor):
            if unit.text not in seen:
                seen.add(unit.text)
                units.append(unit)
    return units, subject


def _header(message: EmailMessage, name: str) -> str | None:
    try:
        value = message.get(name)
    except Exception:  # a header the parser cannot decode: its raw form
        value = message.get_all(name, [None])[0] if hasattr(message, "get_all") else None
    return " ".join(str(value).split()) or None if value else None


def _body_texts(message: EmailMessage) -> list[str]:
    """The message's text: its text/plain parts, else its HTML parts' visible text; attachments are skipped."""
    plain: list[str] = []
    html: list[str] = []
    for part in message.walk() if message.is_multipart() else [message]:
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if part.get_content_maintype() != "text":
            continue
        text = _decoded(part)[:MAX_PART_CHARS]
        (html if ctype == "text/html" else plain).append(text)
    if plain:
        return plain
    from deepkb.loaders.html import load_html

    return ["\n\n".join(u.text for u in load_html(h).units) for h in html]


def _decoded(part: EmailMessage) -> str:
    """A part's text; an unknown charset or a broken transfer encoding gives what can be decoded."""
    try:
        return part.get_content()
    except (LookupError, ValueError, AssertionError, TypeError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)


def _own_lines(text: str) -> list[str]:
    """The lines the sender wrote: quoted replies, their attribution line, forwarded originals and the signature
    left out (blank lines kept, so paragraphs stay apart)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    for i, line in enumerate(lines):
        if line.rstrip() in ("--", "-- ") or _ORIGINAL.match(line.strip()):
            break
        if line.lstrip().startswith(">"):
            if out and _ATTRIBUTION.match(out[-1].strip()):
                out.pop()
            out.append("")
            continue
        if _ATTRIBUTION.match(line.strip()) and any(x.lstrip().startswith(">") for x in lines[i + 1 : i + 3]):
            continue
        out.append(line)
    return out


def _paragraphs(
    lines: list[str], raw_body: list[str], body_first: int, body_last: int, heading: str, cursor: list[int]
) -> list[Unit]:
    """Blank-line separated paragraphs; each line is found in the raw body (in order, from cursor[0]) for its file
    line, and a paragraph whose lines are not found verbatim (base64, quoted-printable) spans the whole body."""
    units: list[Unit] = []
    block: list[tuple[str, int | None]] = []

    def flush() -> None:
        if not block:
            return
        found = [n for _, n in block if n is not None]
        exact = len(found) == len(block) and found == list(range(found[0], found[0] + len(found)))
        start, end = (found[0], found[-1]) if exact else (body_first, max(body_first, body_last))
        units.append(Unit("\n".join(t for t, _ in block), start, end, heading=heading))
        block.clear()

    for line in lines:
        if not line.strip():
            flush()
            continue
        target = line.strip()
        where = None
        for j in range(cursor[0], min(len(raw_body), cursor[0] + 200)):
            if raw_body[j] == target:
                where, cursor[0] = body_first + j, j + 1
                break
        block.append((line.rstrip(), where))
    flush()
    return units
