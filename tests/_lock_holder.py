"""Helper process: takes ``build_lock(PATH)``, prints ``locked`` and holds it until stdin closes
or a line arrives (or until it is killed).

usage: python _lock_holder.py PATH
"""
import sys

from lightning_ser.buildlock import build_lock

with build_lock(sys.argv[1], "a test"):
    print("locked", flush=True)
    sys.stdin.readline()
