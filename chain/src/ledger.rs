//! The ledger state machine: accounts with balances and nonces, authenticated by a sparse merkle
//! tree, and the deterministic rules that apply a block's transactions to them.

use std::collections::BTreeMap;

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash, tags};
use crate::keys::{Address, verify_many};
use crate::smt::{SmtProof, SparseMerkleTree};
use crate::tx::{Outcome, Rejection, Transaction};

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Account {
    pub balance: u64,
    /// How many transfers this account has sent; its next transfer must carry this nonce.
    pub nonce: u64,
}

impl Encode for Account {
    fn encode(&self, out: &mut Vec<u8>) {
        crate::codec::put_u64(out, self.balance);
        crate::codec::put_u64(out, self.nonce);
    }
}

impl Decode for Account {
    const MIN_LEN: usize = 16;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Account {
            balance: r.u64()?,
            nonce: r.u64()?,
        })
    }
}

/// Where an account lives in the state tree.
pub fn account_key(address: &Address) -> Hash {
    Hash::tagged(tags::SMT_KEY, &[&address.0])
}

/// The leaf value committed for an account.
pub fn account_value_hash(address: &Address, account: &Account) -> Hash {
    Hash::tagged(
        tags::ACCOUNT,
        &[
            &address.0,
            &account.balance.to_be_bytes(),
            &account.nonce.to_be_bytes(),
        ],
    )
}

/// Checks a proof that `address` holds `account` under `state_root`. An account that never
/// appeared is proven absent and reads as zero balance, zero nonce.
pub fn verify_account(
    state_root: &Hash,
    address: &Address,
    account: &Account,
    proof: &SmtProof,
) -> bool {
    let key = account_key(address);
    let value = account_value_hash(address, account);
    proof.verify(state_root, &key, Some(&value))
        || (*account == Account::default() && proof.verify(state_root, &key, None))
}

/// The accounts changed by a block, with their new values, sorted by address.
pub type StateChanges = Vec<(Address, Account)>;

#[derive(Clone, Debug)]
pub struct Ledger {
    chain_id: Hash,
    accounts: BTreeMap<Address, Account>,
    tree: SparseMerkleTree,
}

impl Ledger {
    pub fn new(chain_id: Hash, accounts: impl IntoIterator<Item = (Address, Account)>) -> Ledger {
        let mut ledger = Ledger {
            chain_id,
            accounts: BTreeMap::new(),
            tree: SparseMerkleTree::new(),
        };
        for (address, account) in accounts {
            ledger.set(address, account);
        }
        ledger
    }

    pub fn chain_id(&self) -> &Hash {
        &self.chain_id
    }

    fn set(&mut self, address: Address, account: Account) {
        self.tree.update(
            account_key(&address),
            Some(account_value_hash(&address, &account)),
        );
        self.accounts.insert(address, account);
    }

    /// The account if it exists (an account that never appeared is absent from the state tree,
    /// which is not the same tree as one holding a zero account).
    pub fn get(&self, address: &Address) -> Option<Account> {
        self.accounts.get(address).copied()
    }

    /// Puts accounts back as they were (`None`: the account did not exist), for rolling a
    /// proof-of-work chain back past a block with its undo record.
    pub fn restore(&mut self, prior: &[(Address, Option<Account>)]) {
        for (address, account) in prior {
            match account {
                Some(a) => self.set(*address, *a),
                None => {
                    self.tree.update(account_key(address), None);
                    self.accounts.remove(address);
                }
            }
        }
    }

    pub fn account(&self, address: &Address) -> Account {
        self.accounts.get(address).copied().unwrap_or_default()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }

    pub fn state_root(&mut self) -> Hash {
        self.tree.root()
    }

    pub fn prove(&mut self, address: &Address) -> (Account, SmtProof) {
        (
            self.account(address),
            self.tree.prove(&account_key(address)),
        )
    }

    /// The signature verdicts for a block's transactions (raw payloads count as valid; they carry
    /// no signature). Each verdict depends on its transaction alone (see [`crate::sig`]), so one
    /// computed earlier — at admission, say — may stand in for it.
    pub fn verify_signatures(&self, txs: &[Transaction]) -> Vec<bool> {
        let items: Vec<_> = txs
            .iter()
            .filter_map(Transaction::as_transfer)
            .map(|t| {
                (
                    t.signing_bytes(&self.chain_id),
                    t.signature,
                    t.transfer.from,
                )
            })
            .collect();
        let mut transfer_verdicts = verify_many(&items).into_iter();
        txs.iter()
            .map(|tx| match tx {
                Transaction::Transfer(_) => transfer_verdicts.next().unwrap_or(false),
                Transaction::Raw(_) => true,
            })
            .collect()
    }

    /// Applies a block's transactions in order. `signature_ok[i]` is the canonical verdict for
    /// `txs[i]` (from [`verify_signatures`](Self::verify_signatures)); invalid transactions are
    /// skipped with their reason. Returns one outcome per transaction and the changed accounts.
    pub fn apply(
        &mut self,
        txs: &[Transaction],
        signature_ok: &[bool],
    ) -> (Vec<Outcome>, StateChanges) {
        let mut touched: BTreeMap<Address, Account> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            let outcome = match tx {
                Transaction::Raw(_) => Outcome::Ordered,
                Transaction::Transfer(t) => {
                    let ok = signature_ok.get(i).copied().unwrap_or(false);
                    match self.transfer(&mut touched, t, ok) {
                        Ok(()) => Outcome::Applied,
                        Err(r) => Outcome::Rejected(r),
                    }
                }
            };
            outcomes.push(outcome);
        }
        let changes: StateChanges = touched.into_iter().collect();
        for (address, account) in &changes {
            self.set(*address, *account);
        }
        (outcomes, changes)
    }

    fn transfer(
        &self,
        touched: &mut BTreeMap<Address, Account>,
        t: &crate::tx::SignedTransfer,
        signature_ok: bool,
    ) -> Result<(), Rejection> {
        let t = &t.transfer;
        if !signature_ok {
            return Err(Rejection::BadSignature);
        }
        let read = |touched: &BTreeMap<Address, Account>, a: &Address| {
            touched.get(a).copied().unwrap_or_else(|| self.account(a))
        };
        let mut from = read(touched, &t.from);
        if t.nonce != from.nonce {
            return Err(Rejection::BadNonce {
                expected: from.nonce,
                got: t.nonce,
            });
        }
        if t.amount == 0 {
            return Err(Rejection::ZeroAmount);
        }
        if from.balance < t.amount {
            return Err(Rejection::InsufficientBalance {
                balance: from.balance,
                amount: t.amount,
            });
        }
        from.nonce += 1;
        if t.from == t.to {
            touched.insert(t.from, from);
            return Ok(());
        }
        let mut to = read(touched, &t.to);
        to.balance = to
            .balance
            .checked_add(t.amount)
            .ok_or(Rejection::Overflow)?;
        from.balance -= t.amount;
        touched.insert(t.from, from);
        touched.insert(t.to, to);
        Ok(())
    }

    /// Checks a transfer against the current state, for admission to a mempool: the signature
    /// (strictly) and that its nonce is not already used. Future nonces are admitted.
    pub fn admit(&self, tx: &Transaction) -> Result<(), Rejection> {
        let Some(t) = tx.as_transfer() else {
            return Ok(());
        };
        let key = t
            .transfer
            .from
            .public_key()
            .map_err(|_| Rejection::BadSignature)?;
        key.verify_raw(&t.signing_bytes(&self.chain_id), &t.signature)
            .map_err(|_| Rejection::BadSignature)?;
        let from = self.account(&t.transfer.from);
        if t.transfer.nonce < from.nonce {
            return Err(Rejection::BadNonce {
                expected: from.nonce,
                got: t.transfer.nonce,
            });
        }
        if t.transfer.amount == 0 {
            return Err(Rejection::ZeroAmount);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use crate::tx::Transfer;

    struct World {
        keys: Vec<Keypair>,
        ledger: Ledger,
        chain: Hash,
    }

    fn world(n: usize, balance: u64) -> World {
        let chain = Hash([9; 32]);
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::from_secret([i as u8 + 1; 32]))
            .collect();
        let ledger = Ledger::new(
            chain,
            keys.iter()
                .map(|k| (k.address(), Account { balance, nonce: 0 })),
        );
        World {
            keys,
            ledger,
            chain,
        }
    }

    impl World {
        fn tx(&self, from: usize, to: usize, amount: u64, nonce: u64) -> Transaction {
            Transfer {
                from: self.keys[from].address(),
                to: self.keys[to].address(),
                amount,
                nonce,
            }
            .sign(&self.keys[from], &self.chain)
        }

        fn run(&mut self, txs: &[Transaction]) -> Vec<Outcome> {
            let ok = self.ledger.verify_signatures(txs);
            self.ledger.apply(txs, &ok).0
        }
    }

    #[test]
    fn a_valid_transfer_moves_money_and_bumps_the_nonce() {
        let mut w = world(2, 100);
        let out = w.run(&[w.tx(0, 1, 30, 0)]);
        assert_eq!(out, vec![Outcome::Applied]);
        assert_eq!(
            w.ledger.account(&w.keys[0].address()),
            Account {
                balance: 70,
                nonce: 1
            }
        );
        assert_eq!(w.ledger.account(&w.keys[1].address()).balance, 130);
    }

    #[test]
    fn a_replayed_transfer_is_rejected() {
        let mut w = world(2, 100);
        let tx = w.tx(0, 1, 10, 0);
        let out = w.run(&[tx.clone(), tx]);
        assert_eq!(
            out[1],
            Outcome::Rejected(Rejection::BadNonce {
                expected: 1,
                got: 0
            })
        );
        assert_eq!(w.ledger.account(&w.keys[1].address()).balance, 110);
    }

    #[test]
    fn an_overdraft_is_rejected() {
        let mut w = world(2, 100);
        let out = w.run(&[w.tx(0, 1, 101, 0)]);
        assert_eq!(
            out[0],
            Outcome::Rejected(Rejection::InsufficientBalance {
                balance: 100,
                amount: 101
            })
        );
        assert_eq!(w.ledger.account(&w.keys[0].address()).nonce, 0);
    }

    #[test]
    fn an_overflowing_credit_is_rejected() {
        let mut w = world(2, 100);
        let rich = w.keys[1].address();
        w.ledger.set(
            rich,
            Account {
                balance: u64::MAX,
                nonce: 0,
            },
        );
        let out = w.run(&[w.tx(0, 1, 1, 0)]);
        assert_eq!(out[0], Outcome::Rejected(Rejection::Overflow));
        assert_eq!(w.ledger.account(&w.keys[0].address()).balance, 100);
    }

    #[test]
    fn a_bad_signature_is_rejected() {
        let mut w = world(2, 100);
        let mut tx = w.tx(0, 1, 5, 0);
        if let Transaction::Transfer(t) = &mut tx {
            t.signature.0[0] ^= 1;
        }
        assert_eq!(w.run(&[tx])[0], Outcome::Rejected(Rejection::BadSignature));
        // Signed by someone else in the sender's name.
        let forged = Transfer {
            from: w.keys[0].address(),
            to: w.keys[1].address(),
            amount: 5,
            nonce: 0,
        }
        .sign(&w.keys[1], &w.chain);
        assert_eq!(
            w.run(&[forged])[0],
            Outcome::Rejected(Rejection::BadSignature)
        );
        assert_eq!(w.ledger.account(&w.keys[0].address()).balance, 100);
    }

    #[test]
    fn admission_checks_signature_and_stale_nonce() {
        let mut w = world(2, 100);
        w.run(&[w.tx(0, 1, 1, 0)]);
        assert!(w.ledger.admit(&w.tx(0, 1, 1, 1)).is_ok());
        assert!(w.ledger.admit(&w.tx(0, 1, 1, 5)).is_ok());
        assert!(matches!(
            w.ledger.admit(&w.tx(0, 1, 1, 0)),
            Err(Rejection::BadNonce { .. })
        ));
        let mut bad = w.tx(0, 1, 1, 1);
        if let Transaction::Transfer(t) = &mut bad {
            t.signature.0[9] ^= 4;
        }
        assert_eq!(w.ledger.admit(&bad), Err(Rejection::BadSignature));
    }

    /// A tiny deterministic generator, so the property test needs no extra crate.
    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn property_same_blocks_give_the_same_root_and_money_is_conserved() {
        for seed in 0..25u64 {
            let mut rng = SplitMix(seed);
            let mut a = world(6, 1_000);
            let mut b = world(6, 1_000);
            let supply = a.ledger.total_supply();
            let mut nonces = [0u64; 6];
            for _block in 0..8 {
                let mut txs = Vec::new();
                for _ in 0..rng.below(20) {
                    let from = rng.below(6) as usize;
                    let to = rng.below(6) as usize;
                    // Mostly plausible transfers, some overdrafts, replays and future nonces.
                    let amount = rng.below(400);
                    let nonce = match rng.below(10) {
                        0 => nonces[from].saturating_sub(1),
                        1 => nonces[from] + 3,
                        _ => nonces[from],
                    };
                    if nonce == nonces[from] {
                        nonces[from] += 1;
                    }
                    txs.push(a.tx(from, to, amount, nonce));
                }
                let out_a = a.run(&txs);
                let out_b = b.run(&txs);
                assert_eq!(out_a, out_b);
                assert_eq!(a.ledger.state_root(), b.ledger.state_root());
                assert_eq!(a.ledger.total_supply(), supply, "seed {seed}");
                for (i, k) in a.keys.iter().enumerate() {
                    nonces[i] = a.ledger.account(&k.address()).nonce;
                }
            }
            // A ledger rebuilt from the final accounts has the same root.
            let mut rebuilt = Ledger::new(
                a.chain,
                a.ledger
                    .accounts()
                    .map(|(k, v)| (*k, *v))
                    .collect::<Vec<_>>(),
            );
            assert_eq!(rebuilt.state_root(), a.ledger.state_root());
        }
    }

    #[test]
    fn account_proofs_verify_against_the_state_root() {
        let mut w = world(3, 50);
        w.run(&[w.tx(0, 1, 20, 0)]);
        let root = w.ledger.state_root();
        for k in &w.keys {
            let (account, proof) = w.ledger.prove(&k.address());
            assert!(verify_account(&root, &k.address(), &account, &proof));
            let lie = Account {
                balance: account.balance + 1,
                ..account
            };
            assert!(!verify_account(&root, &k.address(), &lie, &proof));
        }
        let stranger = Keypair::from_secret([77; 32]).address();
        let (account, proof) = w.ledger.prove(&stranger);
        assert_eq!(account, Account::default());
        assert!(verify_account(&root, &stranger, &account, &proof));
        assert!(!verify_account(
            &root,
            &stranger,
            &Account {
                balance: 5,
                nonce: 0
            },
            &proof
        ));
    }
}
