"""``python -m pytest_asyncfaults``: the ``asyncfaults`` command."""

from ._cli import main

raise SystemExit(main())
