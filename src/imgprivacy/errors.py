"""The exception hierarchy of imgprivacy.

Every error subclasses a built-in so callers can keep writing ``except ValueError`` or
``except KeyError``; catching :class:`ImgPrivacyError` catches all of ours. Messages say what was
expected, what was received and how to fix it.
"""

from __future__ import annotations


class ImgPrivacyError(Exception):
    """Base class of every error raised by imgprivacy."""


class InvalidInputError(ImgPrivacyError, ValueError):
    """An argument has the wrong shape, dtype, range or value."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class DataNotFoundError(ImgPrivacyError, FileNotFoundError):
    """A data set or model file is not where it was expected."""


class CorruptFileError(ImgPrivacyError, ValueError):
    """A file exists but cannot be read as the expected format."""


class UnknownNameError(ImgPrivacyError, KeyError):
    """A name (registry entry, user, model) is not known."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class NotFittedError(ImgPrivacyError, ValueError, AttributeError):
    """A model was used before ``fit`` (the scikit-learn convention)."""


class SchemaError(ImgPrivacyError, RuntimeError):
    """A database's schema is not one this version can use (a newer release wrote it, say)."""


class StorageError(ImgPrivacyError):
    """A storage operation refused to change anything; ``reason`` is a short stable label.

    The service maps each subclass onto one HTTP status and uses ``reason`` as the response's
    ``detail``; the message explains what was expected and how to fix it.
    """

    def __init__(self, message: str, *, reason: str):
        self.reason = reason
        super().__init__(message)


class AlreadyExistsError(StorageError, ValueError):
    """A record with this name (compared without case for user names) is already stored."""


class RecordNotFoundError(StorageError, UnknownNameError):
    """No stored record has this name."""


class QuotaExceededError(StorageError, ValueError):
    """One owner already holds as many records as allowed (e.g. models per user)."""


class CapacityError(StorageError, ValueError):
    """The store as a whole is full (e.g. the operator's cap on users or models)."""


def check_problems(problems: list[str]) -> None:
    """Raise one :class:`InvalidInputError` listing every collected problem, if any."""
    if problems:
        raise InvalidInputError(problems)
