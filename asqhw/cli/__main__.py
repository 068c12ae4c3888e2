import sys

from asqhw.cli.main import main

sys.exit(main())
