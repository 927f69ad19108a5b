//! Real-kernel checks in network namespaces created by the tests.
