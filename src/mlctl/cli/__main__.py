"""`python -m mlctl.cli`: the same as the `mlctl` command."""

from mlctl.cli.main import main

raise SystemExit(main())
