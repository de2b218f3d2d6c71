"""The Proxmox source the conformance suite was written from: one commit per repository.

The line numbers of every ``@pytest.mark.source`` marker refer to these commits (the mirrors
of github.com/proxmox/<repo> the fidelity work read; qemu-server 9.2.6, pve-ha-manager 5.2.0,
pve-common 9.2.1). Not a test module.
"""

from __future__ import annotations

COMMITS = {
    "qemu-server": "e6352be67f70042a7433a3a3c712b36d02f9f7cb",
    "pve-manager": "14a22df35955d97dfc1af21e117dc894a29df0c9",
    "pve-container": "94f558522ef61f9858c39c264d0ac4e697e49268",
    "pve-ha-manager": "b71218f279d57417dbcdd957128499695fe55171",
    "pve-common": "f665029eac78022e81810ab2e44eace57ade13fb",
    "pve-access-control": "5ccd07d9302562b73374d331b63d25b04b86766c",
    "pve-storage": "0c56bad8b2a7d69e5ce2c243651fe830d6caa936",
    "pve-guest-common": "4a8f6cbf78e1b6992ef77facb4ff2ab3372999e7",
    "pve-http-server": "5c9e4ea773364bdb7ae0e2faec5750fe58129a47",
    "pve-cluster": "7091d92e594952dba65c1e57568b3d7cc244e960",
    # Not mirrored: QEMU's auto-converge rule, cited from upstream migration/ram.c.
    "qemu": "upstream",
}
