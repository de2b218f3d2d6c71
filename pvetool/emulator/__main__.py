"""`python -m pvetool.emulator serve|generate`."""

from pvetool.emulator.main import main

raise SystemExit(main())
