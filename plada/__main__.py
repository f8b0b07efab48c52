import sys

from plada.cli import main

sys.exit(main())
