"""A Proxmox VE 9.2 compatible API emulator.

It imports nothing from the rest of pvetool except the pure timing model (`pvetool.timing`),
so it checks the client independently.
"""
