#!/bin/bash
# Runs once on every nested node at its first boot: prepare-iso --on-first-boot bakes it into the
# ISO and the answer file's [first-boot] section (source = "from-iso") enables it. `up` waits for
# the marker it leaves, which proves the whole answer file was applied.
set -euo pipefail

install -d -m 0755 /var/lib/pvelab
{
    date --iso-8601=seconds
    pveversion --verbose
} >/var/lib/pvelab/first-boot.log 2>&1 || true
touch /var/lib/pvelab/first-boot.done
