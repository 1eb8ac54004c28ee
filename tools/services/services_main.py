"""Entry point of `bazel run //tools/services` (see services.py for the commands)."""

import sys

from tools.services import services

if __name__ == "__main__":
    sys.exit(services.main())
