"""Link profiles: the shipped file, and errors that name the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.trial.errors import ProfileError
from tools.trial.profiles import get_profile, load_profiles, parse_profiles

GOOD = {
    "description": "test link",
    "source": "made up for this test",
    "down": {"rate_kbit": 100, "loss_percent": 2.5},
    "up": {},
}


def test_shipped_profiles_carry_the_issue_numbers_and_sources() -> None:
    # Execute
    profiles = load_profiles()
    # Assert
    assert {"lora", "nbiot", "ltem", "satellite", "clean"} <= set(profiles)
    lora, nbiot, ltem = profiles["lora"], profiles["nbiot"], profiles["ltem"]
    assert (lora.down.rate_kbit, lora.down.loss_percent, lora.up.loss_percent) == (9.6, 5, 5)
    assert nbiot.down.rate_kbit == 60 and nbiot.drops is not None
    assert nbiot.drops.duration_s == 2
    assert ltem.down.rate_kbit == 300
    assert profiles["satellite"].down.queue_ms >= 1000  # the long queueing delay
    assert profiles["clean"].down.rate_bit is None and profiles["clean"].up.loss_percent == 0
    assert all(len(p.source) > 40 for p in profiles.values())


def test_loss_goes_in_basis_points() -> None:
    profiles = parse_profiles({"profile": {"x": GOOD}})
    assert profiles["x"].down.loss_basis_points == 250
    assert profiles["x"].down.rate_bit == 100_000


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"down": {"rate_kbit": -1}}, "profile.x.down.rate_kbit"),
        ({"up": {"rate": 5}}, "profile.x.up.rate: unknown key"),
        ({"down": {"loss_percent": 100}}, "profile.x.down.loss_percent"),
        ({"source": ""}, "profile.x.source"),
        ({"drops": {"every_s": 2, "duration_s": 3}}, "profile.x.drops"),
        ({"drops": {"every_s": 2}}, "profile.x.drops.duration_s"),
        ({"colour": "red"}, "profile.x.colour: unknown key"),
    ],
)
def test_a_bad_field_is_named(change: dict[str, object], named: str) -> None:
    with pytest.raises(ProfileError, match="invalid profiles") as caught:
        parse_profiles({"profile": {"x": {**GOOD, **change}}}, source="p.toml")
    assert named in str(caught.value)
    assert str(caught.value).startswith("p.toml:")


def test_bad_names_and_shapes_are_refused() -> None:
    with pytest.raises(ProfileError, match="profile name 'Bad_Name'"):
        parse_profiles({"profile": {"Bad_Name": GOOD}})
    with pytest.raises(ProfileError, match=r"no \[profile\.<name>\] table"):
        parse_profiles({})
    with pytest.raises(ProfileError, match="profiles: unknown key"):
        parse_profiles({"profiles": {"x": GOOD}})
    with pytest.raises(ProfileError, match=r"profile\.x: not a table"):
        parse_profiles({"profile": {"x": 3}})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[profile.x\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"broken\.toml: not valid TOML"):
        load_profiles(broken)
    with pytest.raises(ProfileError, match=r"missing\.toml: cannot read"):
        load_profiles(tmp_path / "missing.toml")


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"unknown link profile 'wifi'; known: .*lora"):
        get_profile(load_profiles(), "wifi")
