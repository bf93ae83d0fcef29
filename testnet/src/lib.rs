//! `quire-testnet`: the simulator front end (`sim`), and — with the node — local testnets,
//! fault injection, the cross-replica safety checker, benchmarks and scenarios.

pub mod sim;
