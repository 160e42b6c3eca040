"""`python -m dlc`: the same command line as the `dlc` console script."""
from dlc.cli import main

raise SystemExit(main())
