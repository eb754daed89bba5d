"""Failures a journal or a store on another host can report (any backend raises these)."""


class StorageUnavailable(Exception):
    """The storage cannot be reached now: learning answers 503, serving goes on."""


class JournalConflict(Exception):
    """Another writer appended first: catch up and compute the step again."""
