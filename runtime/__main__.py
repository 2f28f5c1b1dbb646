import sys

from vlogger.runtime.cli import main

sys.exit(main())
