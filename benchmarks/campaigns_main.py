"""``python -m benchmarks.campaigns_main JOB``: :mod:`benchmarks.campaigns` run from a
main module that imports nothing of its own.

A large import's reader processes are started with ``spawn``, which imports the
parent's main module again in each of them. The service's (``python -m dispatcher``,
or the ``dispatcher`` script) costs them little; ``benchmarks.campaigns`` as the main
module would have each of them import the whole service and the benchmark's
workloads first, CPU the service never spends, counted in the import's figures."""

if __name__ == "__main__":
    from benchmarks.campaigns import main

    main()
