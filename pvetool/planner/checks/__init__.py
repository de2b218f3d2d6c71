"""Pre-flight checks: can this guest migrate, and to which node? Every answer has a reason.

Pure rules over a `ClusterSnapshot`, the plan's resolved rules (`PlanRules`) and the planner's
working `Placement` (so memory, disk space and affinity see every move planned before). Each
problem is a `Finding` with a stable id, a severity and a sentence for the administrator; the
strategies turn the blockers of a candidate target into "pve3 rejected for 101: ..." lines.

Finding ids (also in docs/findings.md):

=========================  ========  ====================================================
id                         severity  meaning
=========================  ========  ====================================================
PVT-NO-QUORUM              blocker   the cluster is not quorate: PVE refuses every migration
PVT-UNKNOWN-NODE           blocker   the target is not a node of the cluster
PVT-UNKNOWN-GUEST          blocker   the plan names a guest the cluster does not have
                                     (warning for a per-guest setting of a drain)
PVT-OFFLINE                blocker   the target (or the guest's own node) is offline
PVT-HA-MAINTENANCE         blocker   the target is in HA maintenance mode
PVT-DRAINED                blocker   pvetool drained the target and no undrain released it
PVT-CONFIG-UNKNOWN         blocker   the guest's configuration could not be read
PVT-CONFIG-INVALID         blocker   PVE's answer for the guest's configuration is unusable
                                     (malformed, or not what PVE documents)
PVT-LOCKED                 blocker   the guest is locked (backup, snapshot, migrate, ...)
PVT-TEMPLATE               warning   a template stays where it is (rules.exclude.templates)
PVT-EXCLUDED               warning   an excluded or skipped guest stays on a node being
                                     emptied (blocker when a move step names it)
PVT-LOCAL-DEVICE           blocker   PCI/USB passthrough of a host device, a serial or
                                     parallel port, a CT device or bind mount
PVT-MAPPED-DEVICE          blocker   a running VM with a mapped device that cannot live
                                     migrate (warning for a stopped VM: the mapping must
                                     exist on the target)
PVT-LOCAL-DISK             blocker   a running VM with local disks and no with_local_disks,
                                     or a local CD-ROM image
PVT-STORAGE                blocker   a storage the guest needs is not available on the
                                     target (storage.cfg nodes/disabled, not active there,
                                     wrong content type, or PVE's not_allowed_nodes)
PVT-STORAGE-SPACE          blocker   the target storage has no room for the copied disks
PVT-BRIDGE                 blocker   a bridge / VLAN-aware bridge / SDN vnet of the guest's
                                     NICs does not exist on the target (or the target's
                                     network could not be read)
PVT-MEMORY                 blocker   not enough memory on the target after the planned moves
                                     and the headroom
PVT-CPU                    blocker   vCPUs above the target's CPUs x overcommit - headroom
PVT-ARCH                   blocker   source and target have different CPU architectures
PVT-CPU-HOST               warning   ``cpu: host`` and different (or unknown) CPU models
PVT-VERSION                warning   the target runs an older PVE version than the source
PVT-CT-RESTART             warning   a running container: restart migration = downtime
PVT-REPLICATION            warning   a replication job points at another node (blocker for
                                     a live migration of a VM not managed by HA: PVE refuses)
PVT-HA-NODE-AFFINITY       blocker   a strict HA node-affinity rule excludes the target
                                     (warning for a non-strict rule: HA may move it back)
PVT-HA-RESOURCE-AFFINITY   blocker   a negative HA resource-affinity partner is (or will be)
                                     on the target
PVT-HA-DEPENDENT           warning   positive HA resource affinity: other guests move along
PVT-ANTI-AFFINITY          blocker   a plan anti-affinity group member is (or will be) there
PVT-AFFINITY               blocker   the move splits a plan affinity group (warning when the
                                     rest of the group cannot come along)
PVT-PIN                    blocker   a plan pin does not allow the target
PVT-NO-TARGET              blocker   a guest that must move has no acceptable target; the
                                     message lists every rejected target with its reason
PVT-CONVERGENCE            warning   predicted not to converge / needs downtime escalation
PVT-ROOT-ONLY              warning   the plan sets migration type/network, which PVE takes
                                     only from root@pam: not sent, the datacenter's apply
PVT-NOOP                   info      a requested move is already done
PVT-BALANCED               info      a rebalance found nothing worth moving
=========================  ========  ====================================================

Imports: the standard library, `pvetool.model`, `pvetool.planner.placement` and the package's
own modules: `verdicts` (the vocabulary: `Issue`, `TargetVerdict`, `CheckContext`), `guest`
(the cluster and one guest, before any target), `target` (`target_verdict`) and `rules` (HA and
plan rules and the non-blocking warnings of a guest on a target).
"""

from collections.abc import Mapping

from pvetool.planner.checks.guest import cluster_findings, guest_issues
from pvetool.planner.checks.target import target_verdict
from pvetool.planner.checks.verdicts import (
    CheckContext,
    Issue,
    TargetVerdict,
    ha_partners,
    to_finding,
)

__all__ = [
    "FINDING_IDS",
    "CheckContext",
    "Issue",
    "TargetVerdict",
    "cluster_findings",
    "guest_issues",
    "ha_partners",
    "target_verdict",
    "to_finding",
]

FINDING_IDS: Mapping[str, str] = {
    "PVT-NO-QUORUM": "the cluster is not quorate",
    "PVT-UNKNOWN-NODE": "the target is not a node of the cluster",
    "PVT-UNKNOWN-GUEST": "the plan names a guest the cluster does not have",
    "PVT-OFFLINE": "the target or the guest's node is offline",
    "PVT-HA-MAINTENANCE": "the target is in HA maintenance mode",
    "PVT-DRAINED": "the target was drained by pvetool and not undrained yet",
    "PVT-CONFIG-UNKNOWN": "the guest's configuration could not be read",
    "PVT-CONFIG-INVALID": "PVE's answer for the guest's configuration is unusable",
    "PVT-LOCKED": "the guest is locked",
    "PVT-TEMPLATE": "a template stays where it is",
    "PVT-EXCLUDED": "an excluded or skipped guest stays where it is",
    "PVT-LOCAL-DEVICE": "a host-bound device blocks migration",
    "PVT-MAPPED-DEVICE": "a mapped device blocks live migration",
    "PVT-LOCAL-DISK": "local disks need with_local_disks",
    "PVT-STORAGE": "a storage is not available on the target",
    "PVT-STORAGE-SPACE": "no room on the target storage",
    "PVT-BRIDGE": "a network bridge is missing on the target",
    "PVT-MEMORY": "not enough memory on the target",
    "PVT-CPU": "too many vCPUs for the target",
    "PVT-ARCH": "different CPU architecture",
    "PVT-CPU-HOST": "cpu: host between different CPU models",
    "PVT-VERSION": "the target runs an older PVE version",
    "PVT-CT-RESTART": "a running container restarts (downtime)",
    "PVT-REPLICATION": "a replication job points at another node",
    "PVT-HA-NODE-AFFINITY": "an HA node-affinity rule excludes the target",
    "PVT-HA-RESOURCE-AFFINITY": "a negative HA resource-affinity partner is on the target",
    "PVT-HA-DEPENDENT": "positive HA resource affinity moves other guests along",
    "PVT-ANTI-AFFINITY": "a plan anti-affinity rule would be violated",
    "PVT-AFFINITY": "a plan affinity group would be split",
    "PVT-PIN": "a plan pin does not allow the target",
    "PVT-NO-TARGET": "no acceptable target",
    "PVT-CONVERGENCE": "the migration is predicted not to converge quickly",
    "PVT-ROOT-ONLY": "root@pam-only migration options are not sent",
    "PVT-NOOP": "nothing to do",
    "PVT-BALANCED": "the cluster is already balanced",
}
