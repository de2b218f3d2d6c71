"""The PVE API layer: `PveClient`, `fetch_snapshot`, `follow_task` and the JSON converters.

Imports: `pvetool.errors`, `pvetool.model`, `pvetool.settings` and its own modules. Only
`transport.py` and `wire.py` import proxmoxer/requests; nothing outside `api/` ever sees a raw
PVE dict, and no answer reaches a converter before `schema.py` has checked it against PVE's
documentation.
"""

from pvetool.api.client import PARAM_MIN_VERSION, PveClient
from pvetool.api.snapshot import fetch_snapshot
from pvetool.api.tasks import TaskApi, find_migration_task, follow_task


def _satisfies_task_api(client: PveClient) -> TaskApi:
    """Never called: lets mypy check that `PveClient` fits the `TaskApi` protocol."""
    return client


__all__ = [
    "PARAM_MIN_VERSION",
    "PveClient",
    "TaskApi",
    "fetch_snapshot",
    "find_migration_task",
    "follow_task",
]
