import sys

from camlab.cli import main

sys.exit(main(["evaluate", *sys.argv[1:]]))
