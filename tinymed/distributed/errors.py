"""The errors of :mod:`tinymed.distributed`, with ``torch.distributed``'s names.

``DistError`` is a mistake in how the ranks call it (tensors that differ across ranks, a
world size that is not the one asked for); ``DistBackendError`` means MPI itself cannot be
used or did not answer: it is missing, or a collective timed out because a rank died, hung,
or skipped it."""


class DistError(RuntimeError):
    """The ranks disagree, or a distributed call is used wrongly."""


class DistBackendError(DistError):
    """MPI is unavailable, failed, or a collective did not finish within the timeout."""
