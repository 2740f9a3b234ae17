//! Runnable examples of switchyard; this library is empty. Run one with
//! `cargo run -p switchyard-examples --example quickstart`.
//!
//! Every example connects to the URL in `SWITCHYARD_URL` (default
//! `memory://`, which needs no server) and finishes within seconds.
