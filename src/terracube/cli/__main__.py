"""`python -m terracube.cli`: the `terracube` command."""

import sys

from terracube.cli.main import main

if __name__ == "__main__":  # not when imported (e.g. by a walk over all modules)
    sys.exit(main())
