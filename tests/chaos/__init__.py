"""The chaos campaign: seeded trials of drains, rolling maintenance and rebalances under faults.

See README.md in this folder. The package drives pvetool only through its command line and the
emulator only through `python -m pvetool.emulator serve`, its PVE API and its `/_emulator/`
control API; it imports nothing from `pvetool`.
"""
