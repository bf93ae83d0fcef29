//! Undo records: the state of every account a block touched, as it was before the block, so a
//! replica can roll its state back past the block in a reorg. In a valid proof-of-work block
//! every transaction applies, so the accounts a block touches are exactly those its transfers
//! name (sender and recipient).

use crate::codec::{self, Decode, DecodeError, Encode, Reader};
use crate::keys::Address;
use crate::ledger::{Account, Ledger};
use crate::tx::Transaction;

/// Most accounts in one undo record: two per transaction.
pub const UNDO_ACCOUNTS_MAX: usize = 2 * crate::block::BATCH_TXS_MAX;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Undo {
    /// Sorted by address; `None`: the account did not exist.
    pub accounts: Vec<(Address, Option<Account>)>,
}

impl Undo {
    /// The prior state of every account `txs` name, read from `ledger` before they run.
    pub fn before(ledger: &Ledger, txs: &[Transaction]) -> Undo {
        let mut addresses: Vec<Address> = txs
            .iter()
            .filter_map(Transaction::as_transfer)
            .flat_map(|t| [t.transfer.from, t.transfer.to])
            .collect();
        addresses.sort();
        addresses.dedup();
        Undo {
            accounts: addresses.into_iter().map(|a| (a, ledger.get(&a))).collect(),
        }
    }
}

struct Entry(Address, Option<Account>);

impl Encode for Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        codec::put_option(out, &self.1);
    }
}

impl Decode for Entry {
    const MIN_LEN: usize = 33;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Entry(Address::decode(r)?, r.option()?))
    }
}

impl Encode for Undo {
    fn encode(&self, out: &mut Vec<u8>) {
        let entries: Vec<Entry> = self.accounts.iter().map(|(a, b)| Entry(*a, *b)).collect();
        codec::put_seq(out, &entries);
    }
}

impl Decode for Undo {
    const MIN_LEN: usize = 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let entries: Vec<Entry> = r.seq("undo accounts", UNDO_ACCOUNTS_MAX)?;
        Ok(Undo {
            accounts: entries.into_iter().map(|e| (e.0, e.1)).collect(),
        })
    }
}
