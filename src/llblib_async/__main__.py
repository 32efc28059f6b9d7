"""``python -m llblib_async``: the ``llblib-async`` command (:mod:`llblib_async.cli`)."""

import sys

from .cli import main

sys.exit(main())
