//! The closed forms the simulator is compared with, and the binomial interval a measured rate
//! must fall in.

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

fn ln_factorial(n: u64) -> f64 {
    (1..=n).map(|i| (i as f64).ln()).sum()
}

fn choose(n: u64, k: u64) -> f64 {
    ln_choose(n, k).exp()
}

/// Rosenfeld (2014), the attacker with one block pre-mined: the merchant waits for `z` blocks,
/// the attacker has mined `m` ~ NegBin(z, q) meanwhile and then must catch up from `z − m`
/// behind, which it ever does with probability `(q/p)^(z−m)`:
/// `P = 1 − Σ_{m=0}^{z} C(m+z−1, m) (p^z q^m − q^z p^m)`.
pub fn rosenfeld(q: f64, z: u64) -> f64 {
    let p = 1.0 - q;
    if q >= p {
        return 1.0;
    }
    let sum: f64 = (0..=z)
        .map(|m| {
            choose(m + z - 1, m)
                * (p.powi(z as i32) * q.powi(m as i32) - q.powi(z as i32) * p.powi(m as i32))
        })
        .sum();
    1.0 - sum
}

/// Nakamoto's approximation (the Bitcoin paper, §11): the attacker's progress while the
/// merchant waits is Poisson with mean `λ = z q / p`, and catching up from `z − k` behind
/// succeeds with `(q/p)^(z−k)`.
pub fn nakamoto(q: f64, z: u64) -> f64 {
    let p = 1.0 - q;
    let lambda = z as f64 * q / p;
    let mut sum = 0.0;
    for k in 0..=z {
        let poisson = (-lambda + k as f64 * lambda.ln() - ln_factorial(k)).exp();
        sum += poisson * (1.0 - (q / p).powi((z - k) as i32));
    }
    1.0 - sum
}

/// The exact success probability of the simulated model ([`super::double_spend`]): Rosenfeld's,
/// except that the attacker gives up when `give_up` blocks behind. From `d` behind (after the
/// merchant accepts) it must reach one ahead before `give_up` behind: a gambler's ruin with
/// `r = q/p`, `k = d + 1` steps from winning and `N = give_up + 1` between the two ends:
/// `(r^k − r^N) / (1 − r^N)`.
pub fn double_spend_exact(q: f64, z: u64, give_up: u64) -> f64 {
    let p = 1.0 - q;
    let r = q / p;
    let n = (give_up + 1) as i32;
    let catch_up = |behind: i64| -> f64 {
        if behind < 0 {
            return 1.0;
        }
        if behind >= give_up as i64 {
            return 0.0;
        }
        let k = (behind + 1) as i32;
        (r.powi(k) - r.powi(n)) / (1.0 - r.powi(n))
    };
    // m attacker blocks (besides the pre-mined one) before the z-th honest block:
    // P(m) = C(m+z−1, m) p^z q^m; the attacker is then z − (m + 1) behind. Past m = z it is
    // ahead and wins: the tail sums to what is left of 1.
    let mut total = 0.0;
    let mut mass = 0.0;
    for m in 0..=z {
        let pm = choose(m + z - 1, m) * p.powi(z as i32) * q.powi(m as i32);
        mass += pm;
        total += pm * catch_up(z as i64 - m as i64 - 1);
    }
    total + (1.0 - mass)
}

/// Eyal & Sirer (2014), eq. (8): the selfish pool's share of the main chain with hash share
/// `alpha` and tie-winning share `gamma`.
pub fn selfish_revenue(alpha: f64, gamma: f64) -> f64 {
    let a = alpha;
    let num = a * (1.0 - a).powi(2) * (4.0 * a + gamma * (1.0 - 2.0 * a)) - a.powi(3);
    let den = 1.0 - a * (1.0 + (2.0 - a) * a);
    num / den
}

/// The central interval holding at least `level` of Binomial(`n`, `p`), as rates: the rates
/// `k/n` a fair measurement falls within with that probability.
pub fn binomial_interval(n: u64, p: f64, level: f64) -> (f64, f64) {
    let tail = (1.0 - level) / 2.0;
    let ln_pmf = |k: u64| -> f64 {
        if p <= 0.0 {
            return if k == 0 { 0.0 } else { f64::NEG_INFINITY };
        }
        if p >= 1.0 {
            return if k == n { 0.0 } else { f64::NEG_INFINITY };
        }
        ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln()
    };
    // ln k! by a running sum is O(n) per call; precompute the pmf once.
    let mut ln_fact = Vec::with_capacity(n as usize + 1);
    let mut acc = 0.0;
    ln_fact.push(0.0);
    for i in 1..=n {
        acc += (i as f64).ln();
        ln_fact.push(acc);
    }
    let pmf = |k: u64| -> f64 {
        if p <= 0.0 || p >= 1.0 {
            return ln_pmf(k).exp();
        }
        (ln_fact[n as usize] - ln_fact[k as usize] - ln_fact[(n - k) as usize]
            + k as f64 * p.ln()
            + (n - k) as f64 * (1.0 - p).ln())
        .exp()
    };
    let mut cdf = 0.0;
    let mut lo = 0;
    for k in 0..=n {
        cdf += pmf(k);
        if cdf >= tail {
            lo = k;
            break;
        }
    }
    let mut upper = 0.0;
    let mut hi = n;
    for k in (0..=n).rev() {
        upper += pmf(k);
        if upper >= tail {
            hi = k;
            break;
        }
    }
    (lo as f64 / n as f64, hi as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed in the papers: Rosenfeld's table and the Bitcoin paper's §11 table.
    #[test]
    fn the_closed_forms_match_the_published_tables() {
        // Nakamoto, q = 0.1: z = 1 → 0.2045873, z = 5 → 0.0009137.
        assert!((nakamoto(0.1, 1) - 0.2045873).abs() < 1e-6);
        assert!((nakamoto(0.1, 5) - 0.0009137).abs() < 1e-6);
        // Nakamoto, q = 0.3: z = 5 → 0.1773523.
        assert!((nakamoto(0.3, 5) - 0.1773523).abs() < 1e-6);
        // Rosenfeld's z = 1 is 2q (for q < 1/2): the pre-mined block plus one more.
        assert!((rosenfeld(0.1, 1) - 0.2).abs() < 1e-12);
        assert!((rosenfeld(0.3, 1) - 0.6).abs() < 1e-12);
        // Giving up 10 behind changes little.
        for q in [0.1, 0.2, 0.3] {
            for z in 1..=6 {
                assert!((double_spend_exact(q, z, 10) - rosenfeld(q, z)).abs() < 1e-3);
                assert!(double_spend_exact(q, z, 10) <= rosenfeld(q, z) + 1e-12);
            }
        }
        // Eyal & Sirer: γ = 0 is profitable only above 1/3.
        assert!(selfish_revenue(0.25, 0.0) < 0.25);
        assert!(selfish_revenue(0.4, 0.0) > 0.4);
        assert!((selfish_revenue(1.0 / 3.0, 0.0) - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_binomial_interval_holds_its_mass() {
        let (lo, hi) = binomial_interval(20_000, 0.5, 0.99);
        assert!(lo < 0.5 && hi > 0.5 && hi - lo < 0.02);
        let (lo, hi) = binomial_interval(20_000, 1e-5, 0.99);
        assert_eq!(lo, 0.0);
        assert!(hi <= 3.0 / 20_000.0);
    }
}
