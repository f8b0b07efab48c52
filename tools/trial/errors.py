"""The trial exception tree. Messages name the profile field, command or trial at fault.

TrialError
├── ProfileError      a link-profile file is missing, unreadable or invalid
├── KernelError       ip / tc / nft is missing, lacks a feature, or a command failed
├── TrialStateError   a trial record is unreadable, or a trial cannot be found or started
└── TrialRunError     a field trial could not finish (a device never got ready, a step failed)
"""


class TrialError(Exception):
    """Root of every error raised by tools.trial."""


class ProfileError(TrialError):
    """A link-profile file is missing, unreadable or invalid."""


class KernelError(TrialError):
    """A kernel tool is missing, lacks a feature, or a command failed."""


class TrialStateError(TrialError):
    """A trial record is unreadable, or a trial cannot be found or started."""


class TrialRunError(TrialError):
    """A field trial could not finish: a device never got ready, a stage or a step failed."""
