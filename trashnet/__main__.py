import sys

from trashnet.cli import main

sys.exit(main())
