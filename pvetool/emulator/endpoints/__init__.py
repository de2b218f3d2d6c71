"""The emulator's `/api2/json` endpoints along PVE's URL tree, and its `/_emulator/` routes.

Importing this package registers every handler in `routing.REGISTRY`: `cluster` (cluster-wide
reads, /storage, /pools), `nodes`, `guests` (qemu and lxc under a node), `tasks`, `ha`,
`access`, and `control` (fault injection, clock, state dump). Each handler reads or changes the
`Cluster` and returns the `data` PVE would return.

Imports: the emulator's own modules.
"""

from pvetool.emulator.endpoints import access, cluster, control, guests, ha, nodes, tasks
from pvetool.emulator.routing import REGISTRY

__all__ = [
    "REGISTRY",
    "access",
    "cluster",
    "control",
    "guests",
    "ha",
    "nodes",
    "tasks",
]
