//! The admin API's proof-of-work requests: behaviours, the miner's hash rate, and the recent
//! block tree (read-only, for the dashboard).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quire_chain::Transaction;
use quire_chain::codec::Decode;
use quire_chain::genesis::ConsensusMode;
use quire_chain::pow::PowChain;

use super::double_spend::Order;
use super::{PowBehaviour, PowEvent};
use crate::driver::Event;
use crate::http::HttpContext;
use crate::rpc_server::deliver;

/// `POST /admin/behaviour?name=…` on a proof-of-work replica.
pub async fn behaviour(ctx: &HttpContext, params: &BTreeMap<&str, &str>) -> Result<String, String> {
    let name = params.get("name").ok_or("missing ?name=")?;
    let behaviour = PowBehaviour::parse(name).ok_or_else(|| {
        let known: Vec<&str> = PowBehaviour::ALL.iter().map(|b| b.name()).collect();
        format!(
            "unknown proof-of-work behaviour '{name}' (this network runs proof of work: {})",
            known.join(", ")
        )
    })?;
    let event = match behaviour {
        PowBehaviour::DoubleSpend => PowEvent::DoubleSpend(Box::new(double_spend_order(params)?)),
        b => PowEvent::SetBehaviour(b),
    };
    if !deliver(&ctx.events, Event::Pow(event)).await {
        return Err("replica is shutting down".into());
    }
    Ok(format!("behaviour {}\n", behaviour.name()))
}

/// `double-spend` takes `tx=HEX` (the signed conflicting transfer), `confirmations=K` (default
/// 1) and `give_up=B` (default 10).
fn double_spend_order(params: &BTreeMap<&str, &str>) -> Result<Order, String> {
    let hex_tx = params.get("tx").ok_or(
        "double-spend needs ?tx=HEX, the signed conflicting transfer \
         (quire-testnet byzantine I double-spend --from ACCOUNT --to ACCOUNT signs it)",
    )?;
    let bytes = hex::decode(hex_tx).map_err(|_| "tx must be hex")?;
    let conflict =
        Transaction::from_bytes(&bytes).map_err(|e| format!("tx is not a transaction: {e}"))?;
    let number = |name: &str, default: u64| -> Result<u64, String> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| format!("{name} must be a whole number from 1 to 1000"))
        })
    };
    Order::new(
        conflict,
        number("confirmations", 1)?,
        number("give_up", 10)?,
    )
    .ok_or_else(|| "tx must be a signed transfer, not a raw payload".into())
}

/// `POST /admin/hashpower?rate=…` (hashes per second).
pub async fn hashpower(ctx: &HttpContext, params: &BTreeMap<&str, &str>) -> Result<String, String> {
    if ctx.consensus != ConsensusMode::Pow {
        return Err("this replica runs PBFT: it has no miner and no hash rate".into());
    }
    let rate: u64 = params
        .get("rate")
        .ok_or("missing ?rate=")?
        .parse()
        .map_err(|_| "rate must be a whole number of hashes per second")?;
    if rate > 100_000_000 {
        return Err("rate must be at most 100000000 hashes per second".into());
    }
    if !deliver(&ctx.events, Event::Pow(PowEvent::SetHashRate(rate))).await {
        return Err("replica is shutting down".into());
    }
    Ok(format!("hash rate {rate}\n"))
}

/// Blocks this far below the head (and everything above them, side blocks included) are in
/// `GET /admin/pow/tree`.
pub const TREE_WINDOW: u64 = 40;

/// The block tree from `window` blocks below the head up, as text: a `head HEIGHT HASH` line,
/// then one `block HEIGHT HASH PARENT MINER main|side` line per block, in height order. Side
/// blocks that fork off below the window are left out; the tree is walked down the children
/// from the main-chain block at the bottom of the window, so the cost is that of the window.
pub fn render_tree(chain: &PowChain, window: u64) -> String {
    let head = chain.head();
    let mut out = String::new();
    let _ = writeln!(out, "head {} {}", head.height, head.hash());
    let bottom = head.height.saturating_sub(window);
    let Some(root) = chain.main_hash(bottom) else {
        return out;
    };
    let tree = chain.tree();
    let mut blocks = Vec::new();
    let mut stack = vec![root];
    while let Some(hash) = stack.pop() {
        let Some(node) = tree.get(&hash) else {
            continue;
        };
        blocks.push((
            node.header.height,
            hash,
            node.header.parent_hash,
            node.header.proposer,
        ));
        stack.extend(node.children.iter().copied());
    }
    blocks.sort_by_key(|b| b.0);
    for (height, hash, parent, miner) in blocks {
        let main = if chain.on_main(&hash) { "main" } else { "side" };
        let _ = writeln!(out, "block {height} {hash} {parent} {miner} {main}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::driver::Shared;
    use crate::http::Links;

    struct NoLinks;
    impl Links for NoLinks {
        fn set_blocked(&self, _: std::collections::BTreeSet<u32>) {}
        fn set_delay(&self, _: u32, _: Duration) {}
    }

    fn context(mode: ConsensusMode) -> (HttpContext, std::sync::mpsc::Receiver<Event>) {
        let (events, inbox) = std::sync::mpsc::sync_channel(16);
        let ctx = HttpContext::new(
            0,
            true,
            Arc::new(Shared::default()),
            events,
            Arc::new(NoLinks),
            4,
        )
        .with_consensus(mode);
        (ctx, inbox)
    }

    /// The tree near the head: every main-chain block and the side blocks that fork inside the
    /// window, each with its parent and miner; a fork below the window is left out.
    #[test]
    fn the_tree_shows_main_and_side_blocks_within_the_window() {
        use quire_chain::pow::{Limits, Received};
        use quire_chain::store::{MemoryStore, Store};
        use quire_chain::testkit::{TestNet, easy_pow, mine};
        const NOW: u64 = 1_000_000_000;
        let net = TestNet::with_pow(4, 2, 0, easy_pow(4));
        let replica = || {
            let store = MemoryStore::new(&net.genesis);
            let chain = PowChain::open(&net.genesis, &store, Limits::default()).unwrap();
            (store, chain)
        };
        let deliver = |(store, chain): &mut (MemoryStore, PowChain), b: quire_chain::Block| {
            if let Received::NewHead(change) = chain.receive(store, b, NOW).unwrap() {
                store.write_pow(&change.write).unwrap();
            }
        };
        let (mut a, mut b) = (replica(), replica());
        let mut main = Vec::new();
        for i in 1..=3 {
            let block = mine(&mut a.1, &[], 0, NOW - 10_000 + i * 1000);
            deliver(&mut a, block.clone());
            main.push(block);
        }
        // Replica 1 saw only the first block, and mined its own second one: stale at `a`.
        deliver(&mut b, main[0].clone());
        let side = mine(&mut b.1, &[], 1, NOW - 7_500);
        deliver(&mut a, side.clone());
        assert_eq!(a.1.head().hash(), main[2].hash());

        let text = render_tree(&a.1, TREE_WINDOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("head 3 {}", main[2].hash()));
        assert_eq!(lines.len(), 1 + 5, "{text}");
        assert!(
            lines.contains(&format!("block 2 {} {} 1 side", side.hash(), main[0].hash()).as_str())
        );
        assert!(
            lines.contains(
                &format!("block 3 {} {} 0 main", main[2].hash(), main[1].hash()).as_str()
            )
        );
        // A window of one: from height 2 up, without the fork at height 1.
        let text = render_tree(&a.1, 1);
        assert_eq!(text.lines().count(), 1 + 2, "{text}");
        assert!(!text.contains("side"));
    }

    /// A PBFT replica refuses a hash rate; a PoW replica refuses PBFT behaviours and bad rates,
    /// and passes good requests to its driver.
    #[tokio::test]
    async fn the_admin_api_refuses_requests_of_the_other_mode() {
        let (pbft, _inbox) = context(ConsensusMode::Pbft);
        let rate: BTreeMap<&str, &str> = [("rate", "5")].into();
        let err = hashpower(&pbft, &rate).await.unwrap_err();
        assert!(err.contains("runs PBFT"), "{err}");
        let (pow, inbox) = context(ConsensusMode::Pow);
        let equivocate: BTreeMap<&str, &str> = [("name", "equivocate")].into();
        let err = behaviour(&pow, &equivocate).await.unwrap_err();
        assert!(err.contains("this network runs proof of work"), "{err}");
        for bad in ["lots", "999999999999"] {
            let params: BTreeMap<&str, &str> = [("rate", bad)].into();
            assert!(hashpower(&pow, &params).await.is_err());
        }
        hashpower(&pow, &rate).await.unwrap();
        assert!(matches!(
            inbox.try_recv(),
            Ok(Event::Pow(PowEvent::SetHashRate(5)))
        ));
        let selfish: BTreeMap<&str, &str> = [("name", "selfish-mine")].into();
        behaviour(&pow, &selfish).await.unwrap();
        assert!(matches!(
            inbox.try_recv(),
            Ok(Event::Pow(PowEvent::SetBehaviour(
                PowBehaviour::SelfishMine
            )))
        ));
    }

    /// `double-spend` needs its conflicting transfer: missing, not hex, not a transaction, or
    /// bad numbers are refused with the reason; a good order reaches the driver whole.
    #[tokio::test]
    async fn double_spend_needs_a_signed_conflicting_transfer() {
        use quire_chain::codec::Encode;
        let (pow, inbox) = context(ConsensusMode::Pow);
        let net =
            quire_chain::testkit::TestNet::with_pow(4, 2, 0, quire_chain::testkit::easy_pow(2));
        let tx = hex::encode(net.transfer(0, 1, 5, 0).to_bytes());
        for (bad, why) in [
            (vec![], "needs ?tx="),
            (vec![("tx", "zz")], "hex"),
            (vec![("tx", "00ff")], "not a transaction"),
            (
                vec![("tx", tx.as_str()), ("confirmations", "0")],
                "confirmations",
            ),
            (vec![("tx", tx.as_str()), ("give_up", "x")], "give_up"),
        ] {
            let mut params: BTreeMap<&str, &str> = bad.into_iter().collect();
            params.insert("name", "double-spend");
            let err = behaviour(&pow, &params).await.unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let params: BTreeMap<&str, &str> = [
            ("name", "double-spend"),
            ("tx", tx.as_str()),
            ("confirmations", "6"),
        ]
        .into();
        behaviour(&pow, &params).await.unwrap();
        match inbox.try_recv() {
            Ok(Event::Pow(PowEvent::DoubleSpend(order))) => {
                assert_eq!(order.conflict, net.transfer(0, 1, 5, 0));
                assert_eq!((order.confirmations, order.give_up_behind), (6, 10));
            }
            _ => panic!("the order did not reach the driver"),
        }
    }
}
