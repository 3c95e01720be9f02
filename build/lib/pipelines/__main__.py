"""``python -m pipelines`` is the same as the ``suan`` command."""

import sys

from pipelines.cli import main

sys.exit(main())
