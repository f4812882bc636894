"""``python -m seldon_market_ab.cli`` is ``market-ab``."""

from . import main

raise SystemExit(main())
