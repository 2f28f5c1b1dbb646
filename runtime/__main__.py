import sys

from vlogger.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
