"""`make soak`: a fleet of real agent daemons under a seeded chaos loop, checked at the end.

    .venv/bin/python -m bench.soak --out bench/results/soak.json --readme   # 24 agents, 20 min
    .venv/bin/python -m bench.soak --short     # the few-minute version `make test` runs

A real Mosquitto (passwords, the shipped ACL, persistence; tests/support/broker.py), one real
`plada-agent run` process per device, each with its own tiny corpus and the tiny test encoder
(tests/support). New versions of one task per group are published (`plada-build publish`'s checked
path) while a seeded chaos loop SIGKILLs agents mid-receive and mid-training, restarts the broker,
corrupts a corpus image on a device and repairs it later, and publishes junk to task and manifest
topics. At the end every device must be on the latest version of its group's task, no payload may
have been installed twice, every model store must be consistent, and every fault injected must show
in a status message and in the device's trial log with its cause.

Modules: config (presets), fleet (world and processes), observer (status timelines over MQTT),
chaos (the fault injections), verdict (the checks and figures), readme (the README table).
"""
