"""Type aliases shared by the model modules (the vocabulary PVE uses on the wire).

Imports: the standard library only.
"""

from __future__ import annotations

from typing import Literal

GuestKind = Literal["qemu", "lxc"]
TaskState = Literal["running", "stopped"]
HaRuleType = Literal["node-affinity", "resource-affinity"]
Affinity = Literal["positive", "negative"]
MigrationType = Literal["secure", "insecure"]
DeviceKind = Literal["pci", "usb", "serial", "parallel", "dev", "bind-mount", "virtiofs"]
