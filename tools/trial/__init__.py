"""Field trials over emulated thin links, made with the kernel's own tools (run as root).

A trial is one broker network namespace and one namespace per device, joined by veth pairs. Each
device's link gets a named profile (``profiles.toml``): rate and queueing with ``tc tbf``, loss
with an ``nftables`` ``numgen`` rule, scheduled link drops with ``ip link set down/up``. Bytes on
the wire are read from the kernel (interface statistics, nft counters, ``/proc/net/snmp``), never
estimated.

    profiles   named link profiles (pydantic, loaded from TOML)
    kernel     running ip / tc / nft, checking the kernel has what a profile needs
    addressing private addresses that cannot collide with the host's networks
    shaping    tc and nft rules from a profile
    registry   trial records under /run, liveness of their owners
    teardown   removing a trial's namespaces and processes (also a dead trial's leftovers)
    guardian   a watcher process that tears a trial down when its owner dies (SIGKILL included)
    network    TrialNetwork: bring a broker and devices up and down, read counters, drop links
    counters   kernel counters per device and direction
    drops      seeded link-drop schedules and the thread that plays them
    broker     mosquitto inside the broker namespace
    links      the CLI: ``python -m tools.trial.links up|down|status|cleanup|profiles``
"""
