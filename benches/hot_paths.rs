//! Placeholder replaced by the benches helper.
fn main() {}
