"""The one exception every checkpoint reader raises for a bad checkpoint."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model.

    The message is a single line naming the path and, for a mismatch, the key
    with the expected and found shapes, so it can be shown to a user as is.
    """
