"""What Home Assistant shows for a device's task, derived from what the broker really retains.

The agent announces one MQTT ``update`` entity per task (agent.status
``home_assistant_task_discovery``): a retained discovery config at
``<prefix>/update/plada_<device>/<task>/config`` naming a state topic (the device's retained
status), Jinja templates and an availability topic. This module reads that config and the topics
it names from the broker and renders the config's own templates the way Home Assistant's MQTT
update entity does, so the result is what an HA instance on that broker would display, not a
re-derivation from the agent's code:

- the value template is rendered with ``value_json`` (the state topic's JSON) and ``value``; a
  result that is a JSON object sets the fields it has (``installed_version``, ``latest_version``,
  ``release_summary``, ``in_progress``), any other result is the installed version;
- the latest-version template, on its topic, sets ``latest_version``;
- the entity is ``on`` (an update is offered) when latest and installed differ, ``off`` when they
  are equal, unknown while either is missing (HA compares versions it can parse; ``task@N`` it
  cannot, and then any difference is an update);
- available when the availability topic holds ``payload_available``.

Templates run in Jinja's immutable sandbox: they come from devices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from builder.fleet.rollout_record import HomeAssistantView

DEFAULT_PREFIX = "homeassistant"
_ENV = ImmutableSandboxedEnvironment()


def entity_topic(device_id: str, task: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """Where the agent retains the discovery config of its ``task`` entity (agent.status)."""
    return f"{prefix}/update/plada_{device_id}/{task}/config"


def discovery_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """Every PLADA task entity's discovery config."""
    return f"{prefix}/update/+/+/config"


def _render(template: str, body: bytes) -> str | None:
    text = body.decode("utf-8", errors="replace")
    try:
        value_json = json.loads(text)
    except ValueError:
        value_json = None
    try:
        return _ENV.from_string(template).render(value=text, value_json=value_json).strip()
    except TemplateError:
        return None  # HA logs a template error and leaves the entity as it was


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _state(installed: str | None, latest: str | None) -> Literal["on", "off"] | None:
    if installed is None or latest is None:
        return None
    return "off" if installed == latest else "on"


def home_assistant_view(
    retained: Mapping[str, bytes], *, device_id: str, task: str, prefix: str = DEFAULT_PREFIX
) -> HomeAssistantView:
    """The device's ``task`` entity as Home Assistant shows it, from retained messages (topic ->
    body, every topic the discovery config names included)."""
    topic = entity_topic(device_id, task, prefix=prefix)
    raw = retained.get(topic)
    if not raw:
        return HomeAssistantView(entity_topic=topic, present=False)
    config: dict[str, Any] = json.loads(raw)
    fields: dict[str, Any] = {}
    state_body = retained.get(str(config.get("state_topic")))
    if state_body:
        rendered = _render(str(config.get("value_template", "{{ value }}")), state_body)
        parsed: Any = None
        if rendered is not None:
            try:
                parsed = json.loads(rendered)
            except ValueError:
                parsed = None
        if isinstance(parsed, dict):
            fields = {
                k: parsed[k]
                for k in ("installed_version", "latest_version", "release_summary", "in_progress")
                if k in parsed
            }
        elif rendered:
            fields["installed_version"] = rendered
    latest_body = retained.get(str(config.get("latest_version_topic")))
    if latest_body and "latest_version_template" in config:
        latest = _render(str(config["latest_version_template"]), latest_body)
        if latest:
            fields["latest_version"] = latest
    available = None
    if "availability_topic" in config:
        seen = retained.get(str(config["availability_topic"]))
        wanted = str(config.get("payload_available", "online")).encode("utf-8")
        available = None if seen is None else seen == wanted
    installed = _text(fields.get("installed_version"))
    latest_version = _text(fields.get("latest_version"))
    return HomeAssistantView(
        entity_topic=topic,
        present=True,
        available=available,
        installed_version=installed,
        latest_version=latest_version,
        release_summary=fields.get("release_summary"),
        in_progress=fields.get("in_progress"),
        state=_state(installed, latest_version),
    )
