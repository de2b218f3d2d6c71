"""A Proxmox VE 9.2 compatible API emulator.

House rule: it imports nothing from the rest of pvetool except standard-library-only leaves
(`pvetool.timing`, `pvetool.units`, `pvetool.yamlcheck`), so it checks the client independently
of the model and the API client it is there to check (tests/unit/emulator/test_imports.py).
"""
