import sys

from trustpg.console import main

sys.exit(main())
