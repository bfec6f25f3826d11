"""``python -m tada.embedded_quality [--fit-classifiers]``: see :func:`tada.embedded_quality.bar.main`."""

from .bar import main

raise SystemExit(main())
