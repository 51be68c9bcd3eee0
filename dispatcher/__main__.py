"""``python -m dispatcher``: the same as the ``dispatcher`` command."""

from dispatcher.cli.main import main

raise SystemExit(main())
