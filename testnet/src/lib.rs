//! `quire-testnet`: local testnets of real `quire-node` processes ([`generate`], [`ops`]), and
//! the simulator front end ([`sim`]).

pub mod bench;
pub mod generate;
pub mod layout;
pub mod ops;
pub mod process;
pub mod sim;
