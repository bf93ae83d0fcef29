//! The `--attack` section of report.md and `attack.svg`, from the measured structures, and the
//! live model's success probability printed beside each race.

use std::collections::BTreeSet;

use super::{Orphaned, PbftAttack, PowAttack, Sample};

/// The success probability of the live attack's model: no pre-mined block; the attacker has
/// `m ~ NegBin(k, q)` blocks when the payment's block gets its `k`-th confirmation, is then
/// `k − m` behind in blocks and must get one ahead before `give_up` behind (a gambler's ruin
/// with `r = q/p`). Fixed difficulty and no delay: the live run has neither, so it is a guide.
pub fn live_model(q: f64, k: u64, give_up: u64) -> f64 {
    let p = 1.0 - q;
    if q <= 0.0 {
        return 0.0;
    }
    if q >= p {
        return 1.0;
    }
    let r = q / p;
    let ends = (give_up + 1) as i32;
    let catch_up = |behind: i64| -> f64 {
        if behind < 0 {
            1.0
        } else if behind >= give_up as i64 {
            0.0
        } else {
            let steps = (behind + 1) as i32;
            (r.powi(steps) - r.powi(ends)) / (1.0 - r.powi(ends))
        }
    };
    let (mut total, mut mass) = (0.0, 0.0);
    // P(m) = C(m+k−1, m) p^k q^m, built up term by term.
    let mut pm = p.powi(k as i32);
    for m in 0..=k {
        if m > 0 {
            pm *= (m + k - 1) as f64 / m as f64 * q;
        }
        mass += pm;
        total += pm * catch_up(k as i64 - m as i64);
    }
    total + (1.0 - mass)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn range((min, max): (u64, u64)) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{min}–{max}")
    }
}

/// The `--attack` section of report.md, from what was measured.
pub fn render(pbft: &PbftAttack, pow: &PowAttack, give_up: u64) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "\n## Under attack\n");
    let _ = writeln!(
        s,
        "Fresh testnets of {} replicas, each under the same background load. Figure: `attack.svg` (every replica's height over time, with the run's events).\n",
        pbft.nodes
    );
    let _ = writeln!(
        s,
        "### PBFT: f = {} equivocating, then a partition\n",
        pbft.equivocators.len()
    );
    let _ = writeln!(s, "| | measured |\n|---|---|");
    let _ = writeln!(
        s,
        "| equivocators (`byzantine I equivocate`) | {:?} for {:.0} s |",
        pbft.equivocators, pbft.under_attack.seconds
    );
    let _ = writeln!(
        s,
        "| blocks committed by the honest replicas meanwhile | {} |",
        range(pbft.under_attack.blocks())
    );
    let detected: Vec<String> = pbft
        .detected
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| format!("{k}: {v:.0}"))
        .collect();
    let _ = writeln!(
        s,
        "| misbehaviour detected by the honest replicas | {} |",
        if detected.is_empty() {
            "none".into()
        } else {
            detected.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "| blocks committed during the {:.0} s partition (0,1 / 2,3) | {} |",
        pbft.partitioned.seconds,
        range(pbft.partitioned.blocks())
    );
    let _ = writeln!(
        s,
        "| after the heal: blocks in {:.0} s, first new block at every replica | {}, {} |",
        pbft.healed.seconds,
        range(pbft.healed.blocks()),
        pbft.resumed_after_s
            .map_or("not within the phase".into(), |t| format!("{t:.1} s"))
    );
    let _ = writeln!(
        s,
        "| forks (check: agreement, certificates, re-execution) | {} (verdict {}, agreed up to height {}) |",
        pbft.findings.len(),
        if pbft.check_ok { "OK" } else { "FAILED" },
        pbft.agreed_height
    );
    let _ = writeln!(
        s,
        "| blocks seen at a replica and later replaced (reversals) | {} |",
        pbft.replaced_blocks
    );
    for f in &pbft.findings {
        let _ = writeln!(s, "\n- finding: {f}");
    }
    let _ = writeln!(
        s,
        "\n### Proof of work: a {:.0}% double-spender (replica {}), then a partition\n",
        pow.share * 100.0,
        pow.attacker
    );
    let _ = writeln!(
        s,
        "Each race: `byzantine {} double-spend --from account-0 --confirmations K`, then account 0 pays account 1; replica 0 is the merchant. The attacker releases its branch once the payment is K deep and the branch has more work, and gives up {give_up} blocks behind.\n",
        pow.attacker
    );
    let _ = writeln!(
        s,
        "| k | payment's most confirmations at the merchant | attacker | payment reversed after k confirmations | seconds | live model P(success) | Nakamoto |\n|---|---|---|---|---|---|---|"
    );
    for t in &pow.trials {
        let outcome = if t.released {
            "released its branch"
        } else if t.given_up {
            "gave up"
        } else {
            "called off (timeout)"
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} |",
            t.k,
            t.confirmations_shown(),
            outcome,
            yes(t.reversed_after_acceptance()),
            t.seconds,
            live_model(pow.share, t.k, give_up),
            quire_sim::pow::analysis::nakamoto(pow.share, t.k)
        );
    }
    let _ = writeln!(
        s,
        "\nThe merchant's confirmations are polled every 200 ms; a payment the merchant's replica held on its main chain and reversed (its own count) had at least one even if no poll saw it. One race per row: a single outcome, not a rate (`quire-testnet sim-pow double-spend` measures the rates over 20,000 trials). The live model: the attacker starts when the payment is sent, with no pre-mined block.\n"
    );
    let p = &pow.partition;
    let sides: Vec<String> = p
        .side_blocks
        .iter()
        .map(|(side, b)| format!("side of {side}: {b}"))
        .collect();
    let depths: Vec<String> = p
        .reorg_depths
        .iter()
        .map(|(d, c)| format!("depth {d}: {c}"))
        .collect();
    let reversed: Vec<&Orphaned> = p.orphaned.iter().filter(|o| o.reversed).collect();
    let reincluded = p
        .orphaned
        .iter()
        .filter(|o| o.final_height.is_some())
        .count();
    let _ = writeln!(
        s,
        "| partition 0,1 / 2,3, then heal | measured |\n|---|---|"
    );
    let _ = writeln!(s, "| blocks mined on each side | {} |", sides.join(", "));
    let _ = writeln!(
        s,
        "| the sides' heads differed at the heal (a fork) | {} |",
        yes(p.forked)
    );
    let _ = writeln!(
        s,
        "| reorganisations on heal (summed over replicas) | {} |",
        if depths.is_empty() {
            "none".into()
        } else {
            depths.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "| every replica on one head | {} |",
        p.converged_after_s
            .map_or("not within the phase".into(), |t| format!(
                "{t:.1} s after the heal"
            ))
    );
    let _ = writeln!(
        s,
        "| transactions of orphaned blocks: re-included / reversed / waiting | {} / {} / {} |",
        reincluded,
        reversed.len(),
        p.orphaned.len() - reincluded - reversed.len()
    );
    let _ = writeln!(
        s,
        "| check (k-deep agreement) | {} ({}) |",
        if p.check_ok { "OK" } else { "FAILED" },
        p.check_summary
    );
    if !reversed.is_empty() {
        let _ = writeln!(
            s,
            "\nReversed by the heal (on the losing side's chain, their nonce spent otherwise on the final chain):\n"
        );
        for o in reversed {
            let _ = writeln!(
                s,
                "- `{}` at height {} on the side of replica {}: {}",
                o.tx, o.height, o.from_side, o.summary
            );
        }
    }
    s
}

/// Every replica's height over time on each testnet, with the run's events.
pub fn figure(pbft: &PbftAttack, pow: &PowAttack) -> crate::plot::Figure {
    use crate::plot::{Figure, Marker, Panel, Series};
    let heights = |samples: &[Sample], n: usize, label: &dyn Fn(u32) -> String| -> Vec<Series> {
        (0..n as u32)
            .map(|r| Series {
                name: label(r),
                points: samples
                    .iter()
                    .filter(|s| s.replica == r)
                    .map(|s| (s.t_s, s.height as f64))
                    .collect(),
            })
            .collect()
    };
    let faulty: BTreeSet<u32> = pbft.equivocators.iter().copied().collect();
    let pbft_label = |r: u32| {
        if faulty.contains(&r) {
            format!("replica {r} (faulty)")
        } else {
            format!("replica {r}")
        }
    };
    // Short enough for the plot's legend (`plot::LEGEND_CHARS`), which cuts longer names.
    let pow_label = |r: u32| {
        if r == pow.attacker {
            format!("replica {r} (attacker)")
        } else {
            format!("replica {r}")
        }
    };
    let pbft_end = pbft.samples.last().map_or(1.0, |s| s.t_s);
    let offset = pbft_end + 5.0;
    let mut markers: Vec<Marker> = pbft
        .events
        .iter()
        .map(|e| Marker {
            t_s: e.t_s,
            label: format!("PBFT: {}", e.label),
        })
        .collect();
    markers.extend(pow.events.iter().map(|e| Marker {
        t_s: offset + e.t_s,
        label: format!("PoW: {}", e.label),
    }));
    let shifted: Vec<Sample> = pow
        .samples
        .iter()
        .map(|s| Sample {
            t_s: offset + s.t_s,
            ..s.clone()
        })
        .collect();
    let end = shifted.last().map_or(offset, |s| s.t_s);
    Figure {
        title: "Under attack: PBFT (left), then proof of work (right)".into(),
        duration_s: end,
        panels: vec![
            Panel {
                title: "PBFT: executed height (equivocators, then a 0,1 / 2,3 partition)".into(),
                y_label: "height".into(),
                series: heights(&pbft.samples, pbft.nodes, &pbft_label),
            },
            Panel {
                title: "Proof of work: main-chain height (double-spend races, then a partition)"
                    .into(),
                y_label: "height".into(),
                series: heights(&shifted, pow.nodes, &pow_label),
            },
        ],
        markers,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::*;
    use super::*;

    fn trial(k: u64, max_confirmations: u64, payment_on_chain: bool, released: bool) -> Trial {
        Trial {
            k,
            payment: TxId(Hash([1; 32])),
            conflict: TxId(Hash([2; 32])),
            max_confirmations,
            merchant_reversed: 0,
            payment_on_chain,
            conflict_on_chain: !payment_on_chain,
            released,
            given_up: !released,
            timed_out: false,
            seconds: 12.0,
        }
    }

    fn measured() -> (PbftAttack, PowAttack) {
        let sample = |t_s: f64, replica: u32, height: u64| Sample {
            t_s,
            replica,
            height,
            hash: Hash([height as u8; 32]),
        };
        let pbft = PbftAttack {
            nodes: 4,
            equivocators: vec![0],
            under_attack: Progress {
                heights: [(1, (10, 400)), (2, (10, 410))].into(),
                seconds: 10.0,
            },
            partitioned: Progress {
                heights: [(0, (500, 500)), (2, (500, 501))].into(),
                seconds: 8.0,
            },
            healed: Progress {
                heights: [(0, (500, 900)), (2, (501, 900))].into(),
                seconds: 10.0,
            },
            resumed_after_s: Some(1.5),
            check_ok: true,
            agreed_height: 900,
            detected: [("equivocation".to_string(), 3.0)].into(),
            samples: vec![sample(0.0, 0, 10), sample(1.0, 0, 20)],
            events: vec![Event {
                t_s: 0.5,
                label: "0 equivocate".into(),
            }],
            ..PbftAttack::default()
        };
        let orphan = |reversed: bool, final_height: Option<u64>| Orphaned {
            tx: TxId(Hash([if reversed { 7 } else { 8 }; 32])),
            from_side: 2,
            height: 40,
            final_height,
            reversed,
            summary: "q1a → q1b, 1 (nonce 3)".into(),
        };
        let pow = PowAttack {
            nodes: 4,
            attacker: 3,
            share: 0.3,
            trials: vec![trial(1, 1, false, true), trial(6, 6, true, false)],
            partition: PowPartition {
                side_blocks: [(0, 5), (2, 7)].into(),
                forked: true,
                converged_after_s: Some(0.8),
                reorg_depths: [(5, 2)].into(),
                orphaned: vec![orphan(true, None), orphan(false, Some(45))],
                check_ok: true,
                check_summary: "agreed".into(),
            },
            samples: vec![sample(0.0, 3, 1), sample(2.0, 3, 3)],
            events: vec![Event {
                t_s: 1.0,
                label: "payment (k = 1)".into(),
            }],
        };
        (pbft, pow)
    }

    /// The report says what was measured: no fork and no reversal for PBFT, the k = 1 payment
    /// reversed and the k = 6 one not, the partition's fork, reorg and reversed transfer.
    #[test]
    fn the_attack_report_renders_the_measured_outcomes() {
        let (pbft, pow) = measured();
        let md = render(&pbft, &pow, 10);
        assert!(
            md.contains("| blocks committed by the honest replicas meanwhile | 390–400 |"),
            "{md}"
        );
        assert!(md.contains("equivocation: 3"), "{md}");
        assert!(
            md.contains("| blocks committed during the 8 s partition (0,1 / 2,3) | 0–1 |"),
            "{md}"
        );
        assert!(md.contains("1.5 s"), "{md}");
        assert!(
            md.contains("| 0 (verdict OK, agreed up to height 900) |"),
            "{md}"
        );
        assert!(md.contains("| 1 | 1 | released its branch | yes |"), "{md}");
        assert!(md.contains("| 6 | 6 | gave up | no |"), "{md}");
        assert!(md.contains("depth 5: 2"), "{md}");
        assert!(md.contains("| 1 / 1 / 0 |"), "{md}");
        assert!(
            md.contains(&format!("`{}` at height 40", TxId(Hash([7; 32])))),
            "{md}"
        );
        let svg = figure(&pbft, &pow).to_svg();
        assert!(svg.contains("replica 3 (attacker)") && svg.contains("PoW: payment (k = 1)"));
    }

    /// The live model: certain above half the hash power, Rosenfeld-like below, falling with k;
    /// and the share the hashpower setting gives.
    #[test]
    fn the_live_model_and_the_hash_share() {
        assert_eq!(live_model(0.6, 3, 10), 1.0);
        assert_eq!(live_model(0.0, 1, 10), 0.0);
        let k1 = live_model(0.3, 1, 10);
        let k6 = live_model(0.3, 6, 10);
        assert!(k1 > k6 && k6 > 0.0, "{k1} {k6}");
        // k = 1: the attacker wins at once with 2+ blocks first (q²), else catches up.
        assert!(
            (k1 - 0.3 * 0.3 - 0.3 * 0.7 * live_step(0.3, 0) - 0.7 * live_step(0.3, 1)).abs() < 1e-9
        );
        let rate = rate_for_share(20_000, 3, 0.3);
        assert!((rate as f64 / (rate as f64 + 60_000.0) - 0.3).abs() < 1e-4);
    }

    fn live_step(q: f64, behind: i32) -> f64 {
        let r: f64 = q / (1.0 - q);
        (r.powi(behind + 1) - r.powi(11)) / (1.0 - r.powi(11))
    }
}
