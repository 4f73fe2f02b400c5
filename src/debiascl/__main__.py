"""`python -m debiascl` runs the command-line interface."""

from debiascl.cli import main

raise SystemExit(main())
