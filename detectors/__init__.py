"""The ``drift-detector`` MLServer runtime: drift tests on the models' inputs (alibi-detect's, calibrated on the
reference period's own windows, and an online detector), its reference files, and its webhook alerts."""
