"""Run the p4r command line from a checkout: `python cli.py --help`."""

from p4r_search.cli import main

if __name__ == "__main__":
    main()
