"""The [mqtt] section of the agent config (owned by the fleet/link work; AgentConfig embeds it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MqttConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str = Field(
        "mqtt://127.0.0.1:1883", description="mqtt:// or mqtts:// URL of the broker"
    )
    base_topic: str = Field("plada", description="topic prefix shared by the fleet")
    group: str = Field("default", description="fleet group whose task topic this device follows")
