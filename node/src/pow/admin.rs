//! The admin API's proof-of-work requests: behaviours and the miner's hash rate.

use std::collections::BTreeMap;

use quire_chain::Transaction;
use quire_chain::codec::Decode;
use quire_chain::genesis::ConsensusMode;

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
