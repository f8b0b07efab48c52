"""The builder exception tree. Messages name the file, class or setting at fault.

BuilderError
├── TargetError           a target task folder is unusable (no classes, a class without images)
├── EmbeddingCacheError   a cache does not match its corpus or encoder, or is incomplete
├── EncoderError          an encoder cannot be loaded or exported, or fails its parity check
├── BudgetError           a budget cannot be met (too small for one image per class)
├── DatasetFetchError     `make data` cannot fetch or unpack a registry package
├── PublishError          the broker refused or dropped a publish
│   └── PublishRefusedError   the payload is not fit to publish (checked before anything is sent)
└── RolloutError          a staged rollout cannot start (no canary device, no threshold to judge
    │                     by, overlapping groups) or its record does not read back
    └── RolloutRecordError    a rollout record (JSON) is not one: names the bad field
"""


class BuilderError(Exception):
    """Root of every error raised by the builder package."""


class TargetError(BuilderError):
    """A target task folder is unusable."""


class EmbeddingCacheError(BuilderError):
    """An embedding cache does not match its corpus or encoder, or is incomplete."""


class EncoderError(BuilderError):
    """An encoder cannot be loaded or exported, or fails its parity check."""


class BudgetError(BuilderError):
    """A budget cannot be met."""


class DatasetFetchError(BuilderError):
    """`make data` cannot fetch or unpack a registry package."""


class PublishError(BuilderError):
    """The broker refused or dropped a publish."""


class PublishRefusedError(PublishError):
    """The payload is not fit to publish: not a payload, unsigned, badly signed, expired, or
    older than the task already retained for the group."""


class RolloutError(BuilderError):
    """A staged rollout cannot start as asked, or cannot be judged."""


class RolloutRecordError(RolloutError):
    """A rollout record does not validate; the message names the field."""
