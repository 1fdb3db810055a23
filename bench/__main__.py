"""`python -m bench [--quick] [--scenario NAME] [--backend sqlite-memory|postgres-redis]`."""

from bench.runner import main

if __name__ == "__main__":
    main()
