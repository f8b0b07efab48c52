import sys

from bench.fleet.suite import main

sys.exit(main())
