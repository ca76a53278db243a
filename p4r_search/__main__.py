"""`python -m p4r_search` runs the `p4r` command line."""

from .cli import main

if __name__ == "__main__":
    main()
