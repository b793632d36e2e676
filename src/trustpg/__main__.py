import sys

from trustpg.app.console import main

sys.exit(main())
