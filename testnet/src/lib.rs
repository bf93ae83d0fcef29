//! `quire-testnet`: local testnets of real `quire-node` processes ([`generate`], [`ops`]), and
//! the simulator front end ([`sim`]), and seeded random fault runs ([`chaos`]).

pub mod bench;
pub mod chaos;
pub mod check;
pub mod compare;
pub mod dashboard;
pub mod follow;
pub mod generate;
pub mod layout;
pub mod ops;
pub mod plot;
pub mod pow;
pub mod pow_sim;
pub mod process;
pub mod prometheus;
pub mod scenario;
pub mod sim;
