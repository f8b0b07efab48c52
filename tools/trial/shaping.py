"""The tc and nft rules a link profile turns into, one direction at a time.

Rate and queue: a ``tbf`` root qdisc on the sending end's veth (the broker end shapes the downlink,
the device end the uplink). Loss: an nftables ``netdev`` table on the receiving end's veth, with
named counters, so a lost packet has crossed the wire (it is in the interface statistics) and is
dropped on arrival, like a radio frame that failed its checksum.
"""

from __future__ import annotations

from tools.trial.profiles import Direction

LINK_MTU = 1500
MIN_BURST_BYTES = 1600  # one full frame (1514 bytes) must fit the bucket, or tbf drops it
BURST_SECONDS = 0.005  # above ~2.5 Mbit/s the bucket holds 5 ms of traffic


def tbf_burst_bytes(direction: Direction) -> int:
    rate = direction.rate_bit or 0
    return max(MIN_BURST_BYTES, round(rate / 8 * BURST_SECONDS))


def tbf_args(direction: Direction) -> list[str] | None:
    """``tc qdisc replace ... root`` arguments after the device name; None: not shaped."""
    if direction.rate_bit is None:
        return None
    return [
        "tbf",
        "rate",
        f"{direction.rate_bit}bit",
        "burst",
        str(tbf_burst_bytes(direction)),
        "latency",
        f"{round(direction.queue_ms)}ms",
    ]


def tbf_queue_bytes(direction: Direction) -> int:
    """What tbf admits to its queue: rate x latency plus the burst (how tc computes the limit)."""
    rate = direction.rate_bit or 0
    return round(rate / 8 * direction.queue_ms / 1000) + tbf_burst_bytes(direction)


def loss_table(*, table: str, device: str, counter_prefix: str, direction: Direction) -> str:
    """An nft script: a netdev table counting (and randomly dropping) what arrives on ``device``.

    Counters ``<prefix>_seen`` (everything that arrived), ``<prefix>_lost`` (dropped by the loss
    rule) and ``<prefix>_syn`` (TCP SYNs that got through: connection attempts over this link,
    retransmitted SYNs included). ``numgen random mod 10000`` gives loss in 0.01 % steps.
    """
    seen, lost, syn = (f"{counter_prefix}_{name}" for name in ("seen", "lost", "syn"))
    rules = [f'counter name "{seen}"']
    threshold = direction.loss_basis_points
    if threshold > 0:
        rules.append(f'numgen random mod 10000 < {threshold} counter name "{lost}" drop')
    rules.append(f'tcp flags & (syn | ack) == syn counter name "{syn}"')
    body = "\n".join(f"    {rule}" for rule in rules)
    counters = "".join(f"  counter {name} {{}}\n" for name in (seen, lost, syn))
    return (
        f"table netdev {table} {{\n{counters}"
        f"  chain ingress_{device} {{\n"
        f'    type filter hook ingress device "{device}" priority 0; policy accept;\n'
        f"{body}\n"
        f"  }}\n"
        f"}}\n"
    )
