"""`python -m starbuild.cli`: the `starbuild` command without the installed script."""

import sys

from starbuild.cli import main

sys.exit(main())
