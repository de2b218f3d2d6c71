"""PveClient: every REST call pvetool makes to PVE, one method per call.

Imports: tenacity, the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.settings`,
`pvetool.api.convert`, `pvetool.api.transport` and `pvetool.api.client_base` (construction,
the funnel and argument checks, which `PveClient` inherits). Never proxmoxer or requests: every
call goes through the transport's funnel (`PveClient._request`), which sends it, retries it
when that is safe, fails over to the next host and translates errors (see `api/transport.py`).
Each method checks its arguments, makes its call and hands the answer to a pure converter.

``POST .../migrate`` is not idempotent and is never re-sent blindly: after an ambiguous failure
the client looks for the migration task in the source node's task list and at the guest's lock,
and sends the request once more only if nothing started. Shutdown and start requests are
handled the same way.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from tenacity import (
    Retrying,
    retry_if_result,
    stop_after_attempt,
    wait_fixed,
)

from pvetool.api import convert
from pvetool.api.client_base import SID_RE as _SID_RE
from pvetool.api.client_base import ClientBase
from pvetool.api.client_base import as_upid as _as_upid
from pvetool.api.client_base import check_kind as _check_kind
from pvetool.api.client_base import check_node as _check_node
from pvetool.api.client_base import check_vmid as _check_vmid
from pvetool.api.client_base import storage_pairs as _storage_pairs
from pvetool.api.transport import encode_params as _encode_params
from pvetool.api.transport import is_transient as _is_transient
from pvetool.errors import (
    ApiError,
    ApiUnreachable,
    InvalidAnswer,
    NotFound,
    PvetoolError,
    ValidationError,
)
from pvetool.model import (
    ROOT_PAM,
    ClusterResources,
    ClusterStatus,
    DatacenterOptions,
    GuestConfig,
    GuestKind,
    GuestStatus,
    HaMigrateRequest,
    HaResource,
    HaRule,
    HaStatus,
    MigrationRequest,
    Node,
    Precondition,
    PveVersion,
    ReplicationJob,
    StorageConfig,
    StorageStatus,
    TaskLogLine,
    TaskQuery,
    TaskStatus,
    TaskSummary,
    Upid,
    migrate_call_task_types,
)

__all__ = [
    "PARAM_MIN_VERSION",
    "POWER_TASK_TYPES",
    "PveClient",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Parameters that older PVE versions reject ("property is not defined in schema"), by the
# version of the node that receives the call: (guest kind, parameter) -> (major, minor).
PARAM_MIN_VERSION: Mapping[tuple[str, str], tuple[int, int]] = {
    ("qemu", "with-conntrack-state"): (9, 0),  # conntrack migration via dbus-vmstate, PVE 9.0
}

# The tasks a shutdown or start request creates (HA-managed guests: the HA request task).
POWER_TASK_TYPES: Mapping[tuple[str, str], frozenset[str]] = {
    ("qemu", "shutdown"): frozenset({"qmshutdown", "hastop"}),
    ("qemu", "start"): frozenset({"qmstart", "hastart"}),
    ("lxc", "shutdown"): frozenset({"vzshutdown", "hastop"}),
    ("lxc", "start"): frozenset({"vzstart", "hastart"}),
}

# Allowance for clock skew between this machine and the node when searching the task list.
CLOCK_SKEW_S = 60
LOG_PAGE_LINES = 500

# --------------------------------------------------------------------------------------------
# The client


class PveClient(ClientBase):
    """A PVE API client built from `Settings`. Thread-safe; one per cluster.

    `sleep` (used for retry backoff and the ambiguous-POST check), `wall_clock` (epoch seconds,
    for task-list searches and snapshot times) and `monotonic` (durations, ticket age) can be
    replaced in tests.
    """

    # -- versions

    def version(self) -> PveVersion:
        """``GET /version``: the version of the node that answers."""
        return self._call("GET", "/version", convert.version)

    def node_version(self, node: str) -> PveVersion:
        """``GET /nodes/{node}/version``, fetched once per node and cached."""
        with self._lock:
            cached = self._versions.get(node)
        if cached is not None:
            return cached
        ver = self._call("GET", f"/nodes/{_check_node(node)}/version", convert.version)
        with self._lock:
            self._versions[node] = ver
        return ver

    def _supported_params(self, kind: str, node: str, params: dict[str, Any]) -> dict[str, Any]:
        """Drop parameters the receiving node's PVE version does not know."""
        result = dict(params)
        for name in list(result):
            needed = PARAM_MIN_VERSION.get((kind, name))
            if needed is None:
                continue
            have = self.node_version(node)
            if not have.at_least(*needed):
                log = logger.warning if result[name] not in (0, False) else logger.debug
                log(
                    "Not sending %s=%s to %s: it needs PVE %d.%d, the node runs %s",
                    name,
                    result[name],
                    node,
                    needed[0],
                    needed[1],
                    have,
                )
                del result[name]
        return result

    # -- cluster

    def cluster_status(self) -> ClusterStatus:
        """``GET /cluster/status``: quorum and which nodes are online."""
        return self._call("GET", "/cluster/status", convert.cluster_status)

    def nodes(self) -> tuple[Node, ...]:
        """``GET /nodes``: nodes with usage and certificate fingerprint (``ssl_fingerprint``)."""
        return self._call("GET", "/nodes", convert.node_index)

    def cluster_resources(
        self, type_filter: Literal["vm", "storage", "node"] | None = None
    ) -> ClusterResources:
        """``GET /cluster/resources`` (one call for the whole cluster)."""
        return self._call("GET", "/cluster/resources", convert.cluster_resources, type=type_filter)

    def datacenter_options(self) -> DatacenterOptions:
        """``GET /cluster/options``: migration type/network, bandwidth limits, max_workers."""
        return self._call("GET", "/cluster/options", convert.datacenter_options)

    def storage_config(self) -> tuple[StorageConfig, ...]:
        """``GET /storage``: storage definitions (shared flag, node restriction, content)."""
        return self._call("GET", "/storage", convert.storage_config)

    def node_storage_status(self, node: str) -> tuple[StorageStatus, ...]:
        """``GET /nodes/{node}/storage``: status and free space of each storage on a node."""
        return self._call(
            "GET",
            f"/nodes/{_check_node(node)}/storage",
            functools.partial(convert.node_storage_status, node),
        )

    def node_bridges(self, node: str) -> frozenset[str]:
        """``GET /nodes/{node}/network?type=any_bridge``: bridge names on a node."""
        return self._call(
            "GET", f"/nodes/{_check_node(node)}/network", convert.network_bridges, type="any_bridge"
        )

    def replication_jobs(self) -> tuple[ReplicationJob, ...]:
        """``GET /cluster/replication``: storage replication jobs (only those of guests the
        caller may audit)."""
        return self._call("GET", "/cluster/replication", convert.replication_jobs)

    def node_cpu_model(self, node: str) -> str | None:
        """``GET /nodes/{node}/status``: the CPU model (``cpuinfo.model``)."""
        return self._call("GET", f"/nodes/{_check_node(node)}/status", convert.node_cpu_model)

    # -- guests

    def _guest_path(self, kind: str, node: str, vmid: int) -> str:
        return f"/nodes/{_check_node(node)}/{_check_kind(kind)}/{_check_vmid(vmid)}"

    def guest_config(
        self, kind: GuestKind, node: str, vmid: int, *, current: bool = True
    ) -> GuestConfig:
        """``GET /nodes/{node}/{kind}/{vmid}/config`` (current values, not pending ones)."""
        return self._call(
            "GET",
            f"{self._guest_path(kind, node, vmid)}/config",
            functools.partial(convert.guest_config, kind),
            current=current,
        )

    def agent_ping(self, node: str, vmid: int) -> bool:
        """``POST /nodes/{node}/qemu/{vmid}/agent/ping``: does the QEMU guest agent answer?

        True when it answers; False when PVE says it does not (not running, not configured,
        timeout). Transport failures still raise (they say nothing about the guest).
        """
        try:
            self._request("POST", f"{self._guest_path('qemu', node, vmid)}/agent/ping")
        except ApiError as exc:
            if exc.status == 500:
                return False
            raise
        return True

    def guest_status(self, kind: GuestKind, node: str, vmid: int) -> GuestStatus:
        """``GET /nodes/{node}/{kind}/{vmid}/status/current``."""
        return self._call(
            "GET",
            f"{self._guest_path(kind, node, vmid)}/status/current",
            functools.partial(convert.guest_status, kind),
        )

    def shutdown_guest(
        self,
        kind: GuestKind,
        node: str,
        vmid: int,
        *,
        timeout_s: int | None = None,
        force_stop: bool | None = None,
    ) -> Upid:
        """``POST /nodes/{node}/{kind}/{vmid}/status/shutdown``: a clean shutdown (ACPI power
        button, or the guest agent); returns the task's UPID.

        The guest runs until the task ends: follow it. `timeout_s` is how long PVE waits for
        the guest (PVE's default: 60 s); after it the task fails, unless `force_stop`, which
        makes PVE stop the guest hard. An HA-managed guest gets a ``hastop`` task that only asks
        the HA stack, which shuts the guest down shortly after.
        """
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 0
        ):
            raise ValidationError("timeout_s must be a whole number >= 0", field="timeout")
        return self._power(
            _check_kind(kind), node, vmid, "shutdown", timeout=timeout_s, forceStop=force_stop
        )

    def start_guest(self, kind: GuestKind, node: str, vmid: int) -> Upid:
        """``POST /nodes/{node}/{kind}/{vmid}/status/start``; returns the task's UPID.

        The guest runs once the task has ended successfully. An HA-managed guest gets a
        ``hastart`` task that sets its HA state to started; the HA stack starts it shortly after.
        """
        return self._power(_check_kind(kind), node, vmid, "start")

    def _power(
        self,
        kind: GuestKind,
        node: str,
        vmid: int,
        action: Literal["shutdown", "start"],
        **params: Any,
    ) -> Upid:
        """Send a shutdown/start request once; after an ambiguous failure, look for its task
        in the node's task list and send it again only if none started."""
        path = f"{self._guest_path(kind, node, vmid)}/status/{action}"
        since = int(self._wall_clock()) - CLOCK_SKEW_S
        wanted = POWER_TASK_TYPES[(kind, action)]
        for attempt in (1, 2):
            try:
                return self._call("POST", path, convert.upid, idempotent=False, **params)
            except (ApiError, ApiUnreachable) as exc:
                if not _is_transient(exc):
                    raise
                logger.warning(
                    "The %s request for %s %s got no clear answer: %s", action, kind, vmid, exc
                )
                self._sleep(self._settings.wait.ambiguous_check_delay_s)
                try:
                    tasks = self.tasks(TaskQuery(node, vmid=vmid, since=since))
                except (ApiError, ApiUnreachable) as look_exc:
                    raise ApiUnreachable(
                        host=str(self.current_host),
                        reason=(
                            f"the {action} request for {kind} {vmid} got no clear answer ({exc}) "
                            f"and whether it started could not be checked ({look_exc}); it was "
                            f"not sent again: check the task list of {node}"
                        ),
                        retryable=False,
                    ) from look_exc
                found = [
                    t.upid for t in tasks if t.upid.type in wanted and t.upid.starttime >= since
                ]
                if found:
                    return max(found, key=lambda u: (u.starttime, u.pstart))
                if attempt == 2:
                    raise
                logger.warning(
                    "No %s task of %s %s started; sending it once more", action, kind, vmid
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def migrate_precondition(
        self, kind: GuestKind, node: str, vmid: int, target: str | None = None
    ) -> Precondition:
        """``GET /nodes/{node}/{kind}/{vmid}/migrate``: allowed nodes, local disks/resources."""
        return self._call(
            "GET",
            f"{self._guest_path(kind, node, vmid)}/migrate",
            functools.partial(convert.precondition, kind),
            target=_check_node(target) if target else None,
        )

    def start_migration(self, req: MigrationRequest) -> Upid:
        """``POST /nodes/{node}/{kind}/{vmid}/migrate``; returns the task's UPID.

        The parameters are `MigrationRequest`'s; `with_conntrack_state` is dropped for nodes
        older than PVE 9. For an HA-managed guest PVE returns a ``hamigrate`` UPID.

        The POST is never re-sent blindly: after an ambiguous failure the source node's task
        list and the guest's lock tell whether the migration started; only if nothing started
        is it sent once more.
        """
        kind = _check_kind(req.kind)
        node, vmid, target = req.node, req.vmid, req.target
        params = self._migration_params(req)
        if _check_node(node) == target:
            raise ValidationError(f"guest {vmid} is already on node {target}", field="target")
        path = f"{self._guest_path(kind, node, vmid)}/migrate"
        params = self._supported_params(kind, node, _encode_params(params))
        since = int(self._wall_clock()) - CLOCK_SKEW_S

        try:
            return self._call("POST", path, convert.upid, idempotent=False, **params)
        except (ApiError, ApiUnreachable) as exc:
            if not _is_transient(exc):
                raise
            logger.warning("Migration request for %s %s got no clear answer: %s", kind, vmid, exc)
            found = self._started_migration(kind, node, vmid, since, exc)
        if found is not None:
            return found

        logger.warning("No migration of %s %s started; sending the request once more", kind, vmid)
        try:
            return self._call("POST", path, convert.upid, idempotent=False, **params)
        except (ApiError, ApiUnreachable) as exc:
            if not _is_transient(exc):
                raise
            found = self._started_migration(kind, node, vmid, since, exc)
            if found is None:
                raise
            return found

    def _migration_params(self, req: MigrationRequest) -> dict[str, Any]:
        target = _check_node(req.target)
        bwlimit_kib_s = req.bwlimit_kib_s
        if bwlimit_kib_s is not None and (
            isinstance(bwlimit_kib_s, bool)
            or not isinstance(bwlimit_kib_s, int)
            or bwlimit_kib_s < 0
        ):
            raise ValidationError("bwlimit_kib_s must be a whole number >= 0", field="bwlimit")
        storage = (
            _storage_pairs(req.target_storage, "target_storage") if req.target_storage else None
        )
        if req.kind == "lxc":
            given = {
                "online": req.online,
                "with_local_disks": req.with_local_disks,
                "migration_type": req.migration_type,
                "migration_network": req.migration_network,
                "with_conntrack_state": req.with_conntrack_state,
            }
            bad = [name for name, value in given.items() if value]
            if bad:
                raise ValidationError(
                    f"{', '.join(bad)} cannot be used for a container (containers migrate "
                    "offline or with restart=True)",
                    field=bad[0],
                )
            if req.shutdown_timeout_s is not None and req.shutdown_timeout_s < 0:
                raise ValidationError("shutdown_timeout_s must be >= 0", field="timeout")
            return {
                "target": target,
                "restart": req.restart,
                "target-storage": storage,
                "bwlimit": bwlimit_kib_s,
                "timeout": req.shutdown_timeout_s,
            }
        if req.restart is not None or req.shutdown_timeout_s is not None:
            raise ValidationError(
                "restart and shutdown_timeout_s apply to containers only", field="restart"
            )
        if req.migration_type is not None and req.migration_type not in ("secure", "insecure"):
            raise ValidationError(
                f"migration_type '{req.migration_type}' is neither secure nor insecure",
                field="migration_type",
            )
        if req.migration_network is not None:
            try:
                ipaddress.ip_network(req.migration_network, strict=False)
            except ValueError as exc:
                raise ValidationError(
                    f"migration_network '{req.migration_network}' is not a CIDR",
                    field="migration_network",
                ) from exc
        root_only = {
            "migration_type": req.migration_type,
            "migration_network": req.migration_network,
        }
        if self.session_user != ROOT_PAM and any(root_only.values()):
            # PVE answers 400 "Only root may use this option." to anyone but root@pam; the
            # planner has said so already (PVT-ROOT-ONLY). PVE applies datacenter.cfg
            # `migration:` instead (pve-guest-common AbstractMigrate.pm migrate l.111-124).
            logger.info(
                "not sending %s: root@pam only, this session is %s",
                ", ".join(k for k, v in root_only.items() if v),
                self.session_user,
            )
            root_only = {"migration_type": None, "migration_network": None}
        return {
            "target": target,
            "online": True if req.online is None else req.online,
            "with-local-disks": req.with_local_disks,
            "targetstorage": storage,
            "bwlimit": bwlimit_kib_s,
            **root_only,
            "with-conntrack-state": req.with_conntrack_state,
        }

    def _started_migration(
        self, kind: GuestKind, node: str, vmid: int, since: int, cause: PvetoolError
    ) -> Upid | None:
        """After an ambiguous POST: the migration task if one started, None if none did.

        Raises when the guest is locked for migration but no task can be found: re-sending
        would be unsafe and returning nothing would be wrong.
        """
        wanted = migrate_call_task_types(kind)

        def look() -> tuple[Upid | None, bool]:
            tasks = self.tasks(TaskQuery(node, vmid=vmid, since=since))
            candidates = [
                t.upid for t in tasks if t.upid.type in wanted and t.upid.starttime >= since
            ]
            if candidates:
                return max(candidates, key=lambda u: (u.starttime, u.pstart)), True
            return None, self._guest_lock(vmid) == "migrate"

        delay = self._settings.wait.ambiguous_check_delay_s
        self._sleep(delay)  # give a request still in flight time to create its task
        checking = Retrying(
            stop=stop_after_attempt(3),
            wait=wait_fixed(delay),
            retry=retry_if_result(lambda found: found[0] is None and found[1]),
            sleep=self._sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        try:
            upid, locked = checking(look)
        except (ApiError, ApiUnreachable) as exc:
            raise ApiUnreachable(
                host=str(self.current_host),
                reason=(
                    f"the migration request for {kind} {vmid} got no clear answer ({cause}) and "
                    f"whether it started could not be checked ({exc}); it was not sent again: "
                    f"check the task list of {node}"
                ),
                retryable=False,
            ) from exc
        if upid is not None:
            logger.warning("The migration of %s %s had started: %s", kind, vmid, upid)
            return upid
        if locked:
            raise ApiUnreachable(
                host=str(self.current_host),
                reason=(
                    f"the migration request for {kind} {vmid} got no clear answer ({cause}); "
                    f"the guest is locked 'migrate' but no migration task was found on {node}, "
                    "so the request was not sent again: check the node's task list"
                ),
                retryable=False,
            )
        return None

    def _guest_lock(self, vmid: int) -> str | None:
        for guest in self.cluster_resources("vm").guests:
            if guest.vmid == vmid:
                return guest.lock
        return None

    # -- HA

    def ha_resources(self) -> tuple[HaResource, ...]:
        """``GET /cluster/ha/resources``."""
        return self._call("GET", "/cluster/ha/resources", convert.ha_resources)

    def ha_status(self) -> HaStatus:
        """``GET /cluster/ha/status/current``."""
        return self._call("GET", "/cluster/ha/status/current", convert.ha_status)

    def ha_rules(self, ha_resources: tuple[HaResource, ...] | None = None) -> tuple[HaRule, ...]:
        """``GET /cluster/ha/rules`` (PVE 9); on PVE 8, HA groups as node-affinity rules.

        PVE 8 has no rules endpoint (501 -> NotFound); a PVE 9 cluster whose groups were not
        migrated yet (nodes still on 8) has no rules but still has groups.
        """
        try:
            rules = self._call("GET", "/cluster/ha/rules", convert.ha_rules)
        except NotFound:
            rules = ()
        if rules:
            return rules
        try:
            groups = self._request("GET", "/cluster/ha/groups")
        except ApiError as exc:
            if exc.retryable:
                raise
            logger.debug("no HA groups either: %s", exc)
            return rules
        resources = ha_resources if ha_resources is not None else self.ha_resources()
        return self._converted(
            "GET",
            "/cluster/ha/groups",
            lambda raw: convert.ha_groups_as_rules(raw, resources),
            groups,
        )

    def update_ha_rule(
        self,
        rule_id: str,
        rule_type: str,
        *,
        nodes: str | None = None,
        disable: bool | None = None,
        comment: str | None = None,
    ) -> None:
        """``PUT /cluster/ha/rules/{rule}`` (Sys.Console on ``/``): set `nodes`, `disable` and
        `comment` (None: delete the comment). PVE ignores ``disable=0`` (``update_rule``:
        ``delete $param->{disable} if !$param->{disable}``, pve-ha-manager
        ``src/PVE/API2/HA/Rules.pm``), so enabling a rule is ``delete=disable``."""
        params: dict[str, Any] = {"type": rule_type}
        delete = []
        if nodes is not None:
            params["nodes"] = nodes
        if disable:
            params["disable"] = 1
        elif disable is not None:
            delete.append("disable")
        if comment is not None:
            params["comment"] = comment
        else:
            delete.append("comment")
        if delete:
            params["delete"] = ",".join(delete)
        self._request("PUT", f"/cluster/ha/rules/{rule_id}", idempotent=True, **params)

    def update_ha_resource(self, sid: str, *, failback: bool | None) -> None:
        """``PUT /cluster/ha/resources/{sid}`` (Sys.Console on ``/``): set the resource's
        ``failback`` (None: delete it, back to PVE's default 1; pve-ha-manager
        ``src/PVE/API2/HA/Resources.pm`` ``update``)."""
        if not _SID_RE.match(sid):
            raise ValidationError(f"'{sid}' is not an HA resource id (vm:100, ct:101)", field="sid")
        params: dict[str, Any] = (
            {"delete": "failback"} if failback is None else {"failback": int(failback)}
        )
        self._request("PUT", f"/cluster/ha/resources/{sid}", idempotent=True, **params)

    def ha_migrate(self, sid: str | int, target: str) -> HaMigrateRequest:
        """``POST /cluster/ha/resources/{sid}/migrate``: ask the HA manager to migrate.

        Re-sending this request is harmless (it sets the same request again), so it is retried
        like a read. No task is returned: find the ``qmigrate`` with `tasks()` or follow it
        with `pvetool.api.tasks.find_ha_migration`.
        """
        sid_text = str(sid)
        if not _SID_RE.match(sid_text):
            raise ValidationError(f"'{sid}' is not an HA resource id (vm:100, ct:101)", field="sid")
        return self._call(
            "POST",
            f"/cluster/ha/resources/{sid_text}/migrate",
            lambda raw: convert.ha_migrate_request(raw, sid_text, target),
            node=_check_node(target),
        )

    # -- tasks

    def tasks(self, query: TaskQuery) -> tuple[TaskSummary, ...]:
        """``GET /nodes/{node}/tasks`` (``source=all``: running ones too), newest first.

        Tasks are always looked up here, on their node, never in ``/cluster/tasks``: that list
        keeps only the newest ~25 rows per node, running ones included (pve-common
        ``src/PVE/RESTEnvironment.pm`` ``active_workers`` l.388-394), and shows a token without
        Sys.Audit nothing, so a migration task can vanish from it while it still runs (D13).
        Never ``limit=0`` either: on a node's list it means none, not all (D9)."""
        return self._call(
            "GET",
            f"/nodes/{_check_node(query.node)}/tasks",
            convert.task_list,
            vmid=_check_vmid(query.vmid) if query.vmid is not None else None,
            typefilter=query.typefilter,
            since=query.since,
            until=query.until,
            source=query.source,
            limit=query.limit,
            start=query.start or None,
            errors=True if query.errors_only else None,
        )

    def cluster_tasks(self) -> tuple[TaskSummary, ...]:
        """``GET /cluster/tasks``: every node's recent tasks in one call (pve-cluster
        `Cluster.pm` get_tasklist: the running ones and the newest finished, 25 per node)."""
        return self._call("GET", "/cluster/tasks", convert.task_list)

    def task_status(self, upid: Upid | str) -> TaskStatus:
        """``GET /nodes/{node}/tasks/{upid}/status``."""
        task = _as_upid(upid)
        return self._call("GET", f"/nodes/{task.node}/tasks/{task}/status", convert.task_status)

    def task_log(
        self, upid: Upid | str, *, start: int = 0, limit: int = LOG_PAGE_LINES
    ) -> tuple[TaskLogLine, ...]:
        """``GET /nodes/{node}/tasks/{upid}/log?start=&limit=``: one page (start skips lines)."""
        task = _as_upid(upid)
        return self._call(
            "GET",
            f"/nodes/{task.node}/tasks/{task}/log",
            convert.task_log,
            start=start,
            limit=limit,
        )

    def task_log_all(
        self, upid: Upid | str, *, start: int = 0, page_lines: int = LOG_PAGE_LINES
    ) -> tuple[TaskLogLine, ...]:
        """Every log line from `start` on, page by page."""
        lines: list[TaskLogLine] = []
        while True:
            page = self.task_log(upid, start=start + len(lines), limit=page_lines)
            lines.extend(page)
            if len(page) < page_lines:
                return tuple(lines)

    # -- pools (the cluster-wide run marker, `pvetool.state.lock`) and permissions

    def create_pool(self, poolid: str, comment: str) -> None:
        """``POST /pools``: create an empty resource pool; PVE refuses (HTTP 500, "already
        exists") when it exists: a create-if-absent under PVE's user.cfg lock (pve-manager
        ``PVE/API2/Pool.pm`` ``create_pool``). Never retried: a retry of a create that went
        through would find its own pool and take it for another run's."""
        self._request("POST", "/pools", idempotent=False, poolid=poolid, comment=comment)

    def pool_comment(self, poolid: str) -> str | None:
        """``GET /pools?poolid=``: the pool's comment ("" when it has none); None when the pool
        does not exist (PVE: HTTP 500 "pool '...' does not exist")."""
        try:
            raw = self._request("GET", "/pools", poolid=poolid)
        except ApiError as exc:
            if exc.status == 500 and "does not exist" in exc.reason:
                return None
            raise
        for entry in raw if isinstance(raw, list) else []:
            if isinstance(entry, dict) and entry.get("poolid") == poolid:
                comment = entry.get("comment", "")
                return comment if isinstance(comment, str) else ""
        return None

    def delete_pool(self, poolid: str) -> None:
        """``DELETE /pools?poolid=``: delete an empty pool."""
        self._request("DELETE", "/pools", idempotent=False, poolid=poolid)

    def permissions(self) -> dict[str, dict[str, bool]]:
        """``GET /access/permissions``: the caller's privileges per ACL path (for a token, what
        the token may do: its own ACLs, intersected with its user's when privilege-separated;
        pve-access-control ``PVE/API2/AccessControl.pm`` ``permissions``)."""
        raw = self._request("GET", "/access/permissions")
        out: dict[str, dict[str, bool]] = {}
        if not isinstance(raw, dict):
            raise InvalidAnswer(
                method="GET",
                path="/access/permissions",
                problem="not an object of ACL paths",
                host=str(self.current_host),
            )
        for path, privs in raw.items():
            if isinstance(path, str) and isinstance(privs, dict):
                out[path] = {str(k): bool(v) for k, v in privs.items()}
        return out

    def stop_task(self, upid: Upid | str) -> None:
        """``DELETE /nodes/{node}/tasks/{upid}``: stop a running task."""
        task = _as_upid(upid)
        self._request("DELETE", f"/nodes/{task.node}/tasks/{task}")
