"""Errors raised on bad input data; each message names the offending file and says what to do."""


class DataError(ValueError):
    """Input data that a data stage cannot use (the message names the file and the fix)."""


class CorpusLayoutError(DataError):
    """A corpus directory that is not laid out as the recipe expects."""


class TranscriptError(DataError):
    """A missing, empty or malformed transcript."""


class AudioError(DataError):
    """An audio file that is missing or cannot be decoded."""


class MissingFileError(DataError):
    """A required file (manifest, Kaldi ``text``, BPE model, ...) that does not exist."""
