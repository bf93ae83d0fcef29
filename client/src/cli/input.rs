//! Reading what the user typed and the files they named, with one clear line for each mistake.
//! Everything here is checked before the network is contacted.

use std::path::{Path, PathBuf};

use quire_chain::keys::KeyFileError;
use quire_chain::tx::TxId;
use quire_chain::{Address, Hash, Keypair};
use quire_client::Network;
use quire_client::network::resolve;
use quire_wire::rpc::BlockRef;

use super::error::CliError;

/// The network file, loaded on first use (commands like `keygen` never need it).
pub struct Context {
    path: PathBuf,
    network: Option<Network>,
}

impl Context {
    pub fn new(cli_path: Option<&Path>) -> Context {
        Context {
            path: resolve(cli_path),
            network: None,
        }
    }

    pub fn network(&mut self) -> Result<&Network, CliError> {
        if self.network.is_none() {
            let loaded = Network::load(&self.path).map_err(|e| CliError::Usage(e.to_string()))?;
            self.network = Some(loaded);
        }
        // Just set above when it was missing.
        self.network
            .as_ref()
            .ok_or_else(|| CliError::Usage("the network file could not be loaded".into()))
    }

    pub fn take_network(mut self) -> Result<Network, CliError> {
        self.network()?;
        self.network
            .ok_or_else(|| CliError::Usage("the network file could not be loaded".into()))
    }
}

/// A positive whole number that fits in a u64.
pub fn parse_amount(text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "amount must be a positive whole number, got {text:?}"
        ))
    };
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let amount: u64 = digits.parse().map_err(|_| {
        CliError::Usage(format!(
            "amount {digits} is too large: the most is {}",
            u64::MAX
        ))
    })?;
    if amount == 0 {
        return Err(bad());
    }
    Ok(amount)
}

/// An address (`q1…`, checked), the name of an account in the network file, or a key file (its
/// address: what `quire keygen --out FILE` just made).
pub fn parse_address(ctx: &mut Context, text: &str) -> Result<Address, CliError> {
    let text = text.trim();
    if text.starts_with("q1") {
        return Address::parse(text).map_err(|e| CliError::Usage(e.to_string()));
    }
    if Path::new(text).is_file() {
        return read_key(Path::new(text)).map(|k| k.address());
    }
    let network = match ctx.network() {
        Ok(n) => n,
        Err(e) => {
            return Err(CliError::Usage(format!(
                "bad address: {text:?} does not start with 'q1' (and cannot be looked up as an \
                 account name: {})",
                e.message()
            )));
        }
    };
    let named = network
        .accounts
        .iter()
        .find(|a| a.name == text)
        .map(|a| a.address.clone());
    match named {
        Some(address) => Address::parse(&address)
            .map_err(|e| CliError::Usage(format!("account {text} in the network file: {e}"))),
        None => Err(CliError::Usage(format!(
            "bad address: {text:?} does not start with 'q1', is not a key file and is not an \
             account name in {}",
            network.path.display()
        ))),
    }
}

/// A key file, or the key of an account named in the network file.
pub fn load_key(ctx: &mut Context, text: &str) -> Result<Keypair, CliError> {
    let path = Path::new(text);
    let looks_like_a_path = text.contains('/') || text.ends_with(".toml");
    if path.exists() || looks_like_a_path {
        return read_key(path);
    }
    let named = ctx
        .network()
        .ok()
        .and_then(|n| n.accounts.iter().find(|a| a.name == text))
        .map(|a| PathBuf::from(&a.key));
    match named {
        Some(key_path) => read_key(&key_path),
        None => read_key(path),
    }
}

fn read_key(path: &Path) -> Result<Keypair, CliError> {
    Keypair::read_file(path).map_err(|e| match e {
        KeyFileError::Io(shown, reason) => CliError::Usage(format!(
            "cannot read key file {shown}: {}",
            without_os_error(&reason)
        )),
        other => CliError::Usage(other.to_string()),
    })
}

/// `No such file or directory (os error 2)` → `No such file or directory`.
fn without_os_error(reason: &str) -> &str {
    match reason.rfind(" (os error ") {
        Some(i) if reason.ends_with(')') => &reason[..i],
        _ => reason,
    }
}

pub fn parse_tx_hash(text: &str) -> Result<TxId, CliError> {
    Hash::from_hex(text)
        .map(TxId)
        .map_err(|e| CliError::Usage(format!("bad transaction hash {text:?}: {e}")))
}

pub fn parse_block_ref(text: &str) -> Result<BlockRef, CliError> {
    if text.trim() == "latest" {
        return Ok(BlockRef::Latest);
    }
    text.trim()
        .parse::<u64>()
        .map(BlockRef::Height)
        .map_err(|_| {
            CliError::Usage(format!(
                "block must be a height (a whole number) or \"latest\", got {text:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_positive_whole_numbers() {
        assert_eq!(parse_amount("12").unwrap(), 12);
        assert_eq!(parse_amount(&u64::MAX.to_string()).unwrap(), u64::MAX);
        for bad in ["0", "-5", "12x", "", "1.5", "+3", "1e3"] {
            let e = parse_amount(bad).unwrap_err();
            assert!(e.message().starts_with("amount must be"), "{bad}: {e:?}");
        }
        let e = parse_amount("18446744073709551616").unwrap_err();
        assert!(e.message().contains("too large"));
    }

    #[test]
    fn os_error_suffixes_are_dropped() {
        assert_eq!(
            without_os_error("No such file or directory (os error 2)"),
            "No such file or directory"
        );
        assert_eq!(without_os_error("odd"), "odd");
    }

    #[test]
    fn block_refs() {
        assert_eq!(parse_block_ref("latest").unwrap(), BlockRef::Latest);
        assert_eq!(parse_block_ref("7").unwrap(), BlockRef::Height(7));
        assert!(parse_block_ref("-1").is_err());
    }
}
