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

The field trial (``python -m tools.trial``, ``make trial``) on top of these:

    trial_cli     the command: kit, fleet, stages -> report files and the README section
    orchestrator  fleet up on its links, the stages in order, teardown -> TrialReport
    fleet_plan    devices: name, device class, link profile (classes dealt round-robin)
    kit           what is taught: payload, agent configs, test images, images pack (TinyKit)
    data_kit      the kit on ``make data`` output (the demo's encoders and task builder)
    fleet_device  one real ``plada-agent run`` in its namespace, and its result, log and head
    stages        PLADA payload, the task as images, the task as head weights
    stage_drops   an update across a mid-transfer drop, scheduled drops and an offline device
    publish_task  the product's publish, timed, run inside the broker namespace
    scrape        each agent's Prometheus endpoint, scraped inside its namespace
    targets       issue 19's targets checked on the rows
    report_model  the validated report; report_files: JSON, SQLite, markdown; plots: PNGs
"""
