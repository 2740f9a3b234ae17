//! Conformance suite (being written).
fn main() {}
