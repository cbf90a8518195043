"""The errors of :mod:`tinymed.distributed`, with ``torch.distributed``'s names.

``DistError`` is a mistake in how the ranks call it (tensors that differ across ranks, a
world size that is not the one asked for); ``DistBackendError`` means MPI itself cannot be
used or did not answer: it is missing, or a collective timed out because a rank died, hung,
or skipped it.

Both are user errors (:class:`~tinymed.errors.TinymedError`): the ``tinymed`` command prints their
message on one line (a resume with the wrong number of processes, a batch that does not
split across them) rather than reporting a bug."""

from tinymed.errors import TinymedError


class DistError(TinymedError, RuntimeError):
    """The ranks disagree, or a distributed call is used wrongly."""


class DistBackendError(DistError):
    """MPI is unavailable, failed, or a collective did not finish within the timeout."""
