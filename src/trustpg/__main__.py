import sys

from trustpg.cli import main

sys.exit(main())
