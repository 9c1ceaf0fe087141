"""`python -m llara`: the same command line as the `llara` script."""

from llara.cli import main

if __name__ == "__main__":
    main()
