"""pvetool: drain, rebalance and maintain Proxmox VE clusters safely."""

__version__ = "0.1.0"
