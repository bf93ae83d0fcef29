//! The proof-of-work block tree the dashboard draws, merged from what each replica serves at
//! `GET /admin/pow/tree` (its head, and every block near it with parent, miner, and whether it
//! is on that replica's main chain).
//!
//! A block is *stale* when no replica that answered has it on its main chain; a *fork* is a
//! block with two or more children. The *final prefix* is judged on the reference chain: the
//! main chain of the head most replicas share (then the highest head, then the lowest id). A
//! block on it is final once it is `k` deep there (`k` = the genesis's `confirmations`, what a
//! client waits for), i.e. at most `head − k + 1`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

/// One block as a replica reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeBlock {
    pub height: u64,
    pub hash: String,
    pub parent: String,
    pub miner: u32,
    pub main: bool,
}

/// One replica's view: its head and the blocks near it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaTree {
    pub head_height: u64,
    pub head: String,
    pub blocks: Vec<TreeBlock>,
}

/// Blocks drawn below the top of the merged tree: about half a minute at the default block
/// time; the replicas serve a few more.
pub const DRAWN: u64 = 30;

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a replica's answer; `None` if it is not one (a line that does not parse is skipped,
/// a missing or malformed head line refuses the whole answer).
pub fn parse(text: &str) -> Option<ReplicaTree> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split_whitespace().collect();
    let (head_height, head) = match head.as_slice() {
        ["head", h, hash] if is_hash(hash) => (h.parse().ok()?, hash.to_string()),
        _ => return None,
    };
    let blocks = lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["block", h, hash, parent, miner, main @ ("main" | "side")]
                    if is_hash(hash) && is_hash(parent) =>
                {
                    Some(TreeBlock {
                        height: h.parse().ok()?,
                        hash: hash.to_string(),
                        parent: parent.to_string(),
                        miner: miner.parse().ok()?,
                        main: *main == "main",
                    })
                }
                _ => None,
            }
        })
        .collect();
    Some(ReplicaTree {
        head_height,
        head,
        blocks,
    })
}

/// The merged tree as the page draws it: `blocks` in height order (each with `main_of`, the
/// replicas whose main chain holds it, and `reference`, `final`, `stale`, `fork`), the heads
/// of the replicas, `k`, and the height up to which the reference chain is final.
pub fn merge(trees: &[Option<ReplicaTree>], k: u64) -> Value {
    let answered: Vec<(u32, &ReplicaTree)> = trees
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i as u32, t.as_ref()?)))
        .collect();
    // The head most replicas share, then the highest, then the lowest id: one replica mining in
    // private (selfish, withholding) must not set the reference on its own.
    let sharing = |t: &ReplicaTree| answered.iter().filter(|(_, o)| o.head == t.head).count();
    let Some(&(reference, best)) = answered.iter().max_by(|a, b| {
        (sharing(a.1), a.1.head_height)
            .cmp(&(sharing(b.1), b.1.head_height))
            .then(b.0.cmp(&a.0))
    }) else {
        return Value::Null;
    };
    let top = answered
        .iter()
        .flat_map(|(_, t)| t.blocks.iter().map(|b| b.height))
        .max()
        .unwrap_or(0);
    let bottom = top.saturating_sub(DRAWN);
    // By hash: the block and the replicas whose main chain holds it.
    let mut blocks: BTreeMap<&str, (&TreeBlock, BTreeSet<u32>)> = BTreeMap::new();
    for (id, t) in &answered {
        for b in t.blocks.iter().filter(|b| b.height >= bottom) {
            let e = blocks.entry(&b.hash).or_insert((b, BTreeSet::new()));
            if b.main {
                e.1.insert(*id);
            }
        }
    }
    let mut children: BTreeMap<&str, usize> = BTreeMap::new();
    for (b, _) in blocks.values() {
        *children.entry(&b.parent).or_default() += 1;
    }
    let final_up_to = (best.head_height + 1).checked_sub(k);
    let mut out: Vec<(u64, &str, Value)> = blocks
        .iter()
        .map(|(hash, (b, main_of))| {
            let on_reference = main_of.contains(&reference);
            let value = json!({
                "height": b.height,
                "hash": hash,
                "parent": b.parent,
                "miner": b.miner,
                "main_of": main_of,
                "reference": on_reference,
                "final": on_reference && final_up_to.is_some_and(|f| b.height <= f),
                "stale": main_of.is_empty(),
                "fork": children.get(hash).copied().unwrap_or(0) >= 2,
            });
            (b.height, *hash, value)
        })
        .collect();
    out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let heads: BTreeMap<String, &str> = answered
        .iter()
        .map(|(id, t)| (id.to_string(), t.head.as_str()))
        .collect();
    json!({
        "k": k,
        "reference": reference,
        "final_up_to": final_up_to,
        "heads": heads,
        "blocks": out.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn text(head: (u64, char), blocks: &[(u64, char, char, u32, &str)]) -> String {
        let mut s = format!("head {} {}\n", head.0, h(head.1));
        for (height, hash, parent, miner, main) in blocks {
            s += &format!(
                "block {height} {} {} {miner} {main}\n",
                h(*hash),
                h(*parent)
            );
        }
        s
    }

    /// Two replicas on a chain 0-a-b-c, a third that mined its own `d` on `a` and still has it
    /// as head: `b`..`c` are the reference chain (even if `d` were higher: two share `c`), `d` is on replica 2's main chain (not stale),
    /// a block nobody keeps on its main chain is stale, and `a` forks.
    #[test]
    fn a_merged_tree_marks_forks_stale_blocks_and_the_final_prefix() {
        let chain = [
            (0, '0', 'f', 0, "main"),
            (1, 'a', '0', 0, "main"),
            (2, 'b', 'a', 1, "main"),
            (3, 'c', 'b', 0, "main"),
            (2, 'e', 'a', 3, "side"),
        ];
        let r0 = parse(&text((3, 'c'), &chain));
        let r1 = parse(&text((3, 'c'), &chain[..4]));
        let r2 = parse(&text(
            (2, 'd'),
            &[
                (0, '0', 'f', 0, "main"),
                (1, 'a', '0', 0, "main"),
                (2, 'd', 'a', 2, "main"),
                (2, 'b', 'a', 1, "side"),
            ],
        ));
        assert!(r0.is_some() && r2.is_some());
        let tree = merge(&[r0, r1, r2, None], 2);
        assert_eq!(tree["reference"], 0);
        assert_eq!(tree["final_up_to"], 2);
        let blocks = tree["blocks"].as_array().cloned().unwrap_or_default();
        let get = |c: char| {
            blocks
                .iter()
                .find(|b| b["hash"] == h(c).as_str())
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(blocks.len(), 6);
        assert_eq!(get('a')["fork"], true);
        assert_eq!(get('a')["final"], true);
        assert_eq!(get('b')["final"], true);
        assert_eq!(get('b')["main_of"], json!([0, 1]));
        assert_eq!(get('c')["final"], false);
        assert_eq!(get('c')["reference"], true);
        assert_eq!(get('d')["stale"], false);
        assert_eq!(get('d')["reference"], false);
        assert_eq!(get('e')["stale"], true);
        assert_eq!(tree["heads"]["2"], h('d').as_str());
    }

    #[test]
    fn answers_that_are_not_trees_are_refused_or_skipped() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("this replica runs PBFT: it has no block tree"), None);
        assert_eq!(parse("head x 00"), None);
        let t = parse(&format!(
            "head 1 {}\nblock 1 zz {} 0 main\nblock 1 {} {} 7 sideways\ngarbage\n",
            h('a'),
            h('0'),
            h('a'),
            h('0')
        ));
        assert_eq!(t.map(|t| t.blocks.len()), Some(0));
        assert_eq!(merge(&[None, None], 3), Value::Null);
    }
}
