"""What the chat asks of the operating system: an editor at a line, a PDF viewer at a page, a clipboard file."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

# Viewers that can open a PDF at a page, with the arguments that do it.
PDF_VIEWERS: dict[str, list[str]] = {
    "zathura": ["--page={page}", "{path}"],
    "evince": ["--page-index={page}", "{path}"],
    "okular": ["-p", "{page}", "{path}"],
    "qpdfview": ["{path}#{page}"],
    "mupdf": ["{path}", "{page}"],
}
# Terminals known not to implement OSC 52 (the escape sequence Textual copies with).
NO_OSC52_TERMINALS = {"Apple_Terminal"}


def editor_command(path: str, line: int | None) -> list[str]:
    """$VISUAL or $EDITOR (with its own arguments) opening `path` at `line` with the common `+LINE` argument."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    command = shlex.split(editor)
    if line:
        command.append(f"+{line}")
    return [*command, path]


def pdf_command(path: str, page: int | None) -> list[str]:
    """$DEEPKB_PDF_VIEWER, else a known viewer on PATH at the page, else the system's opener (page not supported)."""
    chosen = os.environ.get("DEEPKB_PDF_VIEWER")
    if chosen:
        command = shlex.split(chosen)
        name = Path(command[0]).name
        args = PDF_VIEWERS.get(name)
        if args and page:
            return [*command, *(a.format(page=page, path=path) for a in args)]
        return [*command, path]
    for name, args in PDF_VIEWERS.items():
        if page and shutil.which(name):
            return [name, *(a.format(page=page, path=path) for a in args)]
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    return [opener, path]


# Clipboard tools tried, in order, where OSC 52 cannot be used.
CLIPBOARD_TOOLS = (["pbcopy"], ["wl-copy"], ["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"])


def clipboard_mode() -> str:
    """`osc52` (the terminal copies), `tool` (a clipboard program) or `file` (DEEPKB_CLIPBOARD=file, or neither)."""
    wanted = os.environ.get("DEEPKB_CLIPBOARD", "").lower()
    if wanted in ("file", "tool", "osc52"):
        return wanted
    return "tool" if os.environ.get("TERM_PROGRAM") in NO_OSC52_TERMINALS else "osc52"


def copy_with_tool(text: str) -> str | None:
    """Copy with the first clipboard program on PATH; its name, or None when there is none or it failed."""
    for command in CLIPBOARD_TOOLS:
        if shutil.which(command[0]):
            try:
                subprocess.run(command, input=text.encode("utf-8"), check=True, timeout=5, capture_output=True)
            except (OSError, subprocess.SubprocessError):
                continue
            return command[0]
    return None


def clipboard_dir() -> Path:
    """A folder only this user can reach: DEEPKB_CLIPBOARD_DIR, else $XDG_RUNTIME_DIR/deepkb, else the deepkb cache.

    Never a fixed name in the shared /tmp, where another local user could plant a link in advance."""
    from deepkb.paths import cache_root

    given = os.environ.get("DEEPKB_CLIPBOARD_DIR")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(given or (Path(runtime) / "deepkb" if runtime else cache_root() / "clipboard")).expanduser()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise OSError(errno.EACCES, f"{folder} is not a private folder of this user's; set DEEPKB_CLIPBOARD_DIR")
    if not given and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(folder, 0o700)
    return folder


def clipboard_file(text: str) -> Path:
    """Write copied text to a file the user can open or `cat`, for terminals without OSC 52; returns its path.

    Written to a new private file (O_EXCL, no link followed, mode 600) that then replaces copied.txt: a link planted
    at that name is replaced, never written through."""
    folder = clipboard_dir()
    path = folder / "copied.txt"
    fd, partial = tempfile.mkstemp(prefix=".copied-", suffix=".txt", dir=folder)  # O_EXCL, mode 600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path


def tmux_set_clipboard() -> str | None:
    """Inside tmux: its `set-clipboard` option (`on`, `external`, `off`); None outside tmux or when tmux cannot say.

    tmux's default, `external`, drops the OSC 52 sequence an application sends: copying that way silently fails."""
    if not os.environ.get("TMUX"):
        return None
    try:
        shown = subprocess.run(
            ["tmux", "show-options", "-gv", "set-clipboard"], capture_output=True, text=True, timeout=2
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return shown.stdout.strip() or None if shown.returncode == 0 else None
