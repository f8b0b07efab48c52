"""The agent exception tree. Messages name the config key, file or task at fault.

AgentError
├── ConfigError           the TOML config is missing, unreadable or invalid (exit 78, EX_CONFIG)
├── FeatureCacheError     the feature cache is corrupt or belongs to another corpus / encoder
├── EncoderBackendError   an encoder backend cannot load or run the encoder file
├── TrainerError          a head-training backend failed or is unavailable here
├── ModelStoreError       the model store is empty, corrupt, or has nothing to roll back to
└── TaskRejectedError     a task was refused by the version policy (agent.versions)
    ├── AlreadyInstalledError   that very payload is the task's installed one
    ├── TaskLimitError          a new task would exceed state.max_tasks (refused, not dropped)
    └── TaskTopicError          a payload or retirement came on another task's topic
"""


class AgentError(Exception):
    """Root of every error raised by the agent package."""


class ConfigError(AgentError):
    """The TOML config is missing, unreadable or invalid."""


class FeatureCacheError(AgentError):
    """The feature cache is corrupt or belongs to another corpus or encoder."""


class EncoderBackendError(AgentError):
    """An encoder backend cannot load or run the encoder file."""


class TrainerError(AgentError):
    """A head-training backend failed or is unavailable here."""


class ModelStoreError(AgentError):
    """The model store is empty, corrupt, or has nothing to roll back to."""


class TaskRejectedError(AgentError):
    """A task was refused."""


class AlreadyInstalledError(TaskRejectedError):
    """The payload is already the task's installed one: nothing to do."""


class TaskLimitError(TaskRejectedError):
    """A new task would exceed the device's bound on tasks (state.max_tasks): refused and
    reported; no installed task is dropped to make room."""


class TaskTopicError(TaskRejectedError):
    """A payload or retirement came on another task's topic: this delivery is refused, the
    payload itself is not (it is taken when it comes on its own task's topic)."""
