//! Nothing to link against: this package holds the helper programs that the
//! cross-process tests in `tests/` exec, and those tests.
