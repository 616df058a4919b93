"""Exceptions the library raises; the CLI turns each into one line and its ``exit_status``
(2, a bad option or argument, unless the class says otherwise)."""

from __future__ import annotations


class WhichvoiceError(Exception):
    """Base class of every error whichvoice reports to a user as one line.

    ``public``: the message for a remote client (the HTTP API), when the full one names
    things of the server's own (file paths, other users' voices); None: the same message.
    ``exit_status``: the command's exit status for it."""

    exit_status = 2

    def __init__(self, message: str = "", *, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public

    def public_message(self) -> str:
        """What may be said about this error to someone who is not the server's owner."""
        return str(self) if self.public is None else self.public


class SetupError(WhichvoiceError):
    """A file of this installation or of the server's own (an encoder's calibration) that
    cannot be used: its owner's to mend, never a client's mistake (HTTP 503, logged in
    full; the client is not told the server's paths)."""


class AudioDecodeError(WhichvoiceError):
    """The input is not audio that can be decoded (unreadable, corrupt, empty)."""


class NoSuchChannelError(AudioDecodeError):
    """A channel asked for that the recording does not have (``audio.Channel``)."""


class AudioTooLongError(AudioDecodeError):
    """The audio decodes but is longer than the caller accepts."""


class SilentAudioError(WhichvoiceError):
    """The audio decodes but holds no usable signal."""


class UnknownVoiceError(WhichvoiceError, ValueError):
    """A voice id or voice set name that no engine knows."""


class EngineUnavailableError(WhichvoiceError):
    """An engine that cannot run here (not installed, no credentials, ...)."""


class SynthesisError(WhichvoiceError):
    """An engine failed to speak one sentence."""


class EngineFaultError(SynthesisError):
    """An engine that failed whatever the text (a local one did not answer in time or cannot
    be run; a remote service failed: EngineServiceError): not the sentence's fault. Exit 1;
    over HTTP a 502 ``engine_failed``."""

    exit_status = 1


class EngineServiceError(EngineFaultError):
    """A remote engine's service failed a request for reasons of its own (throttled past the
    retries, an internal failure, no answer)."""


class EngineAccessError(EngineServiceError):
    """A remote engine's service that refuses this account or cannot be reached (credentials
    rejected, access denied, the endpoint unreachable): every request after it would fail the
    same way, so a corpus stops at the first."""


class EngineBrokenError(EngineFaultError):
    """A local engine that cannot run at all here (its program or its data missing): every
    clip would fail alike, so a corpus stops at the first, as for EngineAccessError."""


class TextTooLongError(SynthesisError):
    """A sentence longer than the engine accepts."""


class SentencesError(WhichvoiceError):
    """A sentence source with nothing usable in it, or that cannot be read."""


class OutputError(WhichvoiceError):
    """An output location that cannot be written."""


class OutputExistsError(OutputError):
    """An output already there, neither to be resumed nor overwritten: said in the words of
    the caller, Python's keywords (``resume=True``) or, once ``for_cli``, the options."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: resume=True to complete it, or overwrite=True to replace it")
        self.what = what

    def for_cli(self) -> OutputError:
        return OutputError(f"{self.what}: --resume to complete it, or --overwrite to replace it")


class OutputLostError(OutputError):
    """An output that could not be written on mid-run (a full disk, a store gone): exit 1, as
    for inputs that could not be used; the rows written before are kept (``--resume``)."""

    exit_status = 1


class NothingReadError(WhichvoiceError):
    """Inputs that were all given right, none of which could be used: exit 1, as for one."""

    exit_status = 1
