"""The builder's side of MQTT: publish a payload to a fleet group, read the fleet back."""
