"""``python -m lightning_ser`` → :func:`lightning_ser.cli.main`."""
from lightning_ser.cli import main

if __name__ == "__main__":
    main()
