"""`python -m kho.warehouse.backup install`: `make setup`'s step installing pgBackRest where apt can."""

import sys

from kho.warehouse.backup.pgbackrest import install

if sys.argv[1:] != ["install"]:
    print("usage: python -m kho.warehouse.backup install", file=sys.stderr)
    sys.exit(2)
print(install())
