//! Slowness and noise: `delay-votes` holds what it sends, `flood` adds junk bytes and useless
//! but validly signed messages.

use quire_chain::Hash;
use quire_chain::cert::CheckpointStatement;

use super::{Actor, Behaviour, DELAY_TICKS, FLOOD_PER_TICK};
use crate::message::{Message, Prepare, SlotVote, ViewChange};
use crate::replica::Output;

impl Actor {
    pub(super) fn delay(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        let mut now = Vec::new();
        for o in outputs {
            match o {
                Output::Send(..) | Output::Broadcast(..)
                    if self.behaviour == Behaviour::DelayVotes =>
                {
                    self.delayed.push_back((self.tick + DELAY_TICKS, o));
                }
                other => now.push(other),
            }
        }
        while self.delayed.front().is_some_and(|(t, _)| *t <= self.tick) {
            if let Some((_, o)) = self.delayed.pop_front() {
                now.push(o);
            }
        }
        // Switching back to honest releases everything at once.
        if self.behaviour != Behaviour::DelayVotes {
            now.extend(self.delayed.drain(..).map(|(_, o)| o));
        }
        now
    }

    pub(super) fn flood(&mut self) -> Vec<Output> {
        let others = self.others();
        let mut out = Vec::new();
        let view = self.replica.view();
        for _ in 0..FLOOD_PER_TICK {
            if others.is_empty() {
                break;
            }
            let to = others[(self.random() % others.len() as u64) as usize];
            let (r1, r2) = (self.random(), self.random());
            let junk = match r1 % 4 {
                0 => {
                    let len = (r2 % 512) as usize;
                    let bytes: Vec<u8> = (0..len).map(|_| self.random() as u8).collect();
                    out.push(Output::SendRaw(to, bytes));
                    continue;
                }
                1 => Message::Prepare(self.sign(Prepare(SlotVote {
                    view,
                    seq: r2 % 1_000_000 + 1_000,
                    digest: Hash([7; 32]),
                }))),
                2 => Message::Checkpoint(self.sign(CheckpointStatement {
                    seq: r2 % 1_000_000,
                    block_hash: Hash([9; 32]),
                })),
                _ => Message::ViewChange {
                    view_change: self.sign(ViewChange {
                        new_view: view + 1_000 + r2 % 1_000,
                        checkpoint: self.replica.stable_checkpoint().clone(),
                        prepared: Vec::new(),
                    }),
                    batches: Vec::new(),
                },
            };
            out.push(Output::Send(to, junk));
        }
        out
    }
}
