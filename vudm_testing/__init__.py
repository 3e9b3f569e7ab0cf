"""vudm in other people's test suites: a pytest plugin (``vudm_testing.pytest_plugin``,
registered through the ``pytest11`` entry point) and an avocado base class
(``vudm_testing.avocado``). Test harness code lives here, not in the product packages."""
