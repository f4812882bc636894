"""The ``drift-detector`` MLServer runtime: drift tests on the models' inputs (our series tests, a shift test and a
broken-feed test calibrated on the reference period's own windows; alibi-detect's i.i.d. tests as an option; an
online detector), its reference files, and its webhook alerts."""
