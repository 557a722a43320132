"""Great Expectations suites (one module per domain) and the gate runner."""
