"""Domain errors. Every message is written for the user: it says what went wrong and what to do next."""


class DeepKBError(Exception):
    """Base class: the CLI prints str(error) as one line and exits non-zero."""

    exit_code = 1


class UsageError(DeepKBError):
    """The command was called wrongly (bad path, bad option)."""

    exit_code = 2


class NoKnowledgeBaseError(DeepKBError):
    """A command that reads a knowledge base was pointed at a folder that holds none (a mistyped --kb)."""


class LoadError(DeepKBError):
    """A file could not be read into text; the message is the reason shown beside the file."""


class EmbeddingModelError(DeepKBError):
    """The embedding model cannot be found, fails its checksum, or differs from the one the KB was built with."""


class LockedError(DeepKBError):
    """Another process is writing to the knowledge base."""


class ModelNotFoundError(DeepKBError):
    """No local GGUF model is available for answering."""


class ModelLoadError(DeepKBError):
    """A GGUF model file exists but llama.cpp could not load it (corrupt, truncated, unsupported)."""


class ModelDownloadError(DeepKBError):
    """A model could not be downloaded; the message names the file, where to get it and where to put it."""


class LLMError(DeepKBError):
    """The language model backend failed while answering (server unreachable, prompt too long)."""


class StorageError(DeepKBError):
    """The knowledge base's own files cannot be read or written (damaged, disk full, read-only, newer version)."""

    exit_code = 3


class DatabaseDamagedError(StorageError):
    """kb.sqlite is not a readable SQLite database (overwritten, truncated, bad sectors)."""


class DiskFullError(StorageError):
    """The disk holding the knowledge base has no room left; what was committed before stays."""


class ReadOnlyError(StorageError):
    """The knowledge-base folder cannot be written: a read-only mount, or no permission."""


class NewerVersionError(StorageError):
    """The knowledge base was written by a newer deepkb, whose schema this one does not know."""
