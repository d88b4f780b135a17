import sys

from edgeskel.cli import main

sys.exit(main())
