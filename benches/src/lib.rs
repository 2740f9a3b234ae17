//! criterion benches of switchyard; this library is empty. See
//! `benches/README.md` for how to run them.
