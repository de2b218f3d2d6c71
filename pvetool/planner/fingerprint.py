"""Fingerprint of the cluster state a plan was computed on, and drift since then.

A saved plan (``pvetool plan show FILE -o json > plan.json``) carries `ExecutionPlan.facts`:
the state that matters for its moves, as ``(key, value)`` pairs, and `fingerprint`, their
SHA-256. Before a saved plan runs, `drift` compares those facts with a fresh snapshot and says
in sentences what changed; the executor refuses to run while there is any.

What counts: quorum; for every node involved (sources, targets, nodes the guests are on) whether
it is online, its PVE version and HA maintenance mode; for every guest involved and every guest
on an involved node: its node, status, lock and configured memory. A guest found on its
planned target is not drift (a resumed plan moved it), nor is one of the plan's guests newly on
one of its nodes.

Pure. Imports: the standard library and `pvetool.model`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable

from pvetool.model import ClusterSnapshot, ExecutionPlan

__all__ = ["digest", "drift", "facts", "fingerprint"]


def facts(
    snapshot: ClusterSnapshot, vmids: Collection[int], nodes: Iterable[str] = ()
) -> tuple[tuple[str, str], ...]:
    """The relevant state as sorted (key, value) pairs."""
    involved = set(nodes)
    for vmid in vmids:
        guest = snapshot.guests.get(vmid)
        if guest is not None:
            involved.add(guest.node)
    out: dict[str, str] = {"cluster:quorate": "yes" if snapshot.quorate else "no"}
    for name in sorted(involved):
        node = snapshot.nodes.get(name)
        if node is None:
            out[f"node:{name}:online"] = "absent"
            continue
        out[f"node:{name}:online"] = "yes" if node.online else "no"
        out[f"node:{name}:version"] = str(node.version) if node.version else "?"
        out[f"node:{name}:ha-maintenance"] = "yes" if snapshot.in_ha_maintenance(name) else "no"
    guests = set(vmids) | {g.vmid for g in snapshot.guests.values() if g.node in involved}
    for vmid in sorted(guests):
        guest = snapshot.guests.get(vmid)
        if guest is None:
            out[f"guest:{vmid}:node"] = "absent"
            continue
        out[f"guest:{vmid}:node"] = guest.node
        out[f"guest:{vmid}:status"] = guest.status
        out[f"guest:{vmid}:lock"] = guest.lock or "-"
        out[f"guest:{vmid}:memory"] = str(guest.memory_bytes)
    return tuple(sorted(out.items(), key=lambda kv: _sort_key(kv[0])))


def _sort_key(key: str) -> tuple[str, int, str]:
    kind, _, rest = key.partition(":")
    ident, _, attr = rest.partition(":")
    return (kind, int(ident) if ident.isdigit() else 0, f"{ident}:{attr}")


def digest(items: Iterable[tuple[str, str]]) -> str:
    text = "\n".join(f"{k}={v}" for k, v in items)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def fingerprint(
    snapshot: ClusterSnapshot, vmids: Collection[int], nodes: Iterable[str] = ()
) -> str:
    """SHA-256 of `facts`: equal fingerprints mean nothing relevant changed."""
    return digest(facts(snapshot, vmids, nodes))


def drift(plan: ExecutionPlan, snapshot: ClusterSnapshot) -> list[str]:
    """What changed since the plan was computed, as sentences; [] when nothing did."""
    if not plan.facts:
        if not plan.fingerprint:
            return []
        return [
            "The plan carries a fingerprint but not the state it was computed on, so changes "
            "cannot be checked; compute the plan again."
        ]
    old = dict(plan.facts)
    nodes = {k.split(":")[1] for k in old if k.startswith("node:")}
    vmids = {int(k.split(":")[1]) for k in old if k.startswith("guest:")}
    new = dict(facts(snapshot, vmids, nodes))
    visits: dict[int, set[str]] = {}
    for move in plan.moves:
        visits.setdefault(move.vmid, {move.source}).add(move.target)
    out: list[str] = []
    if old.get("cluster:quorate") != new.get("cluster:quorate"):
        out.append(
            "The cluster is no longer quorate."
            if new.get("cluster:quorate") == "no"
            else "The cluster has become quorate again."
        )
    for name in sorted(nodes):
        was, now = old.get(f"node:{name}:online"), new.get(f"node:{name}:online")
        if was != now:
            out.append(
                f"Node {name} is {_node_state(now)} (it was {_node_state(was)} when the plan "
                "was computed)."
            )
            continue
        for attr, what in (("version", "PVE version"), ("ha-maintenance", "HA maintenance")):
            key = f"node:{name}:{attr}"
            if key in old and old.get(key) != new.get(key):
                out.append(f"Node {name}: {what} is now {new.get(key)} (was {old.get(key)}).")
    for key in sorted(set(old) | set(new), key=_sort_key):
        if not key.startswith("guest:") or old.get(key) == new.get(key):
            continue
        vmid = int(key.split(":")[1])
        attr = key.split(":")[2]
        was, now = old.get(key), new.get(key)
        guest = snapshot.guests.get(vmid)
        label = f"{vmid} ({guest.name})" if guest is not None and guest.name else str(vmid)
        if attr == "node":
            if was is None:
                if vmid not in visits:
                    out.append(f"Guest {label} is new on {now}.")
            elif now == "absent":
                out.append(f"Guest {label} no longer exists.")
            elif was in visits.get(vmid, ()) and now in visits[vmid]:
                continue  # moved by this plan (a resumed run): the executor skips it
            else:
                out.append(f"Guest {label} is now on {now} (it was on {was}).")
        elif was is None or now is None:
            continue  # reported with its node
        elif attr == "status":
            out.append(f"Guest {label} is now {now} (it was {was}).")
        elif attr == "lock":
            out.append(
                f"Guest {label} is now locked ({now})."
                if now != "-"
                else f"Guest {label} is no longer locked ({was})."
            )
        elif attr == "memory":
            out.append(f"Guest {label} now has {_gib(now)} of memory (it had {_gib(was)}).")
    return out


def _node_state(value: str | None) -> str:
    return {"yes": "online", "no": "offline", "absent": "no longer in the cluster"}.get(
        value or "", "unknown"
    )


def _gib(value: str) -> str:
    try:
        return f"{int(value) / 1024**3:.1f} GiB"
    except ValueError:
        return value
