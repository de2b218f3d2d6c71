"""PVE JSON and PVE text (config strings, task log lines) -> `pvetool.model` objects.

Imports: the standard library, `pvetool.errors`, `pvetool.model` and its own modules. Pure
functions: no I/O, no clock. Raw dicts stop here; everything returned is a frozen model object.

One module per family of answers: `guests` (configs, status, the migrate precondition),
`cluster` (versions, status, resources, storage, options, replication), `ha`, `tasks` (UPIDs,
task status and logs, progress lines) and `snapshot` (the join of all of them). `_coerce` holds
the shared helpers for PVE's loosely typed values.
"""

from pvetool.api.convert._coerce import parse_bytes, parse_property_string, parse_pve_size
from pvetool.api.convert.cluster import (
    cluster_resources,
    cluster_status,
    datacenter_options,
    network_bridges,
    node_cpu_model,
    node_index,
    node_storage_status,
    replication_jobs,
    replication_targets,
    storage_config,
    version,
)
from pvetool.api.convert.guests import (
    guest_config,
    guest_status,
    parse_disk,
    parse_local_device,
    parse_net,
    precondition,
)
from pvetool.api.convert.ha import (
    ha_groups_as_rules,
    ha_migrate_request,
    ha_resources,
    ha_rules,
    ha_status,
)
from pvetool.api.convert.snapshot import RawCluster, build_snapshot, check_membership
from pvetool.api.convert.tasks import (
    parse_downtime_ms,
    parse_duration_s,
    parse_progress_line,
    task_list,
    task_log,
    task_status,
    upid,
)

__all__ = [
    "RawCluster",
    "build_snapshot",
    "check_membership",
    "cluster_resources",
    "cluster_status",
    "datacenter_options",
    "guest_config",
    "guest_status",
    "ha_groups_as_rules",
    "ha_migrate_request",
    "ha_resources",
    "ha_rules",
    "ha_status",
    "network_bridges",
    "node_cpu_model",
    "node_index",
    "node_storage_status",
    "parse_bytes",
    "parse_disk",
    "parse_downtime_ms",
    "parse_duration_s",
    "parse_local_device",
    "parse_net",
    "parse_progress_line",
    "parse_property_string",
    "parse_pve_size",
    "precondition",
    "replication_jobs",
    "replication_targets",
    "storage_config",
    "task_list",
    "task_log",
    "task_status",
    "upid",
    "version",
]
