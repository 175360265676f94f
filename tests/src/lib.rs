//! Test helpers shared by keel's root-namespace and VM tests.
