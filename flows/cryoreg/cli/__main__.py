"""`python -m cryoreg.cli`: the `cryoreg` command without its console script."""

from cryoreg.cli.main import main

raise SystemExit(main())
