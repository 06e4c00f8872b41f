"""``python -m dbrepro.book``."""

import sys

from .cli import main

sys.exit(main())
