//! What proof-of-work replicas send each other over the mesh (docs/chain-format.md §12.5).
//! Unsigned: a block proves itself by its work and its execution, and the transport already
//! authenticates the sending replica. The tags start at 0x50, apart from PBFT's message kinds,
//! and a network runs one mode or the other.

use quire_chain::codec::{self, Decode, DecodeError, Encode, Reader};
use quire_chain::{Block, Hash, Transaction};

/// Most hashes in a locator and most blocks in one reply.
pub const BLOCKS_PER_REPLY_MAX: usize = 64;
pub const LOCATOR_MAX: usize = 64;
/// Most transactions in one relay.
pub const TXS_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PowMessage {
    /// A new block (mined here or relayed).
    Block(Box<Block>),
    /// "Send me your main-chain blocks after the first of these I share with you."
    GetBlocks(Vec<Hash>),
    Blocks(Vec<Block>),
    /// The sender's head, announced now and then so a replica that fell behind asks.
    Tip {
        height: u64,
        hash: Hash,
        work: Hash,
    },
    /// Client transactions a replica admitted, relayed so that whoever mines next has them.
    Txs(Vec<Transaction>),
}

const TAG_BLOCK: u8 = 0x50;
const TAG_GET_BLOCKS: u8 = 0x51;
const TAG_BLOCKS: u8 = 0x52;
const TAG_TIP: u8 = 0x53;
const TAG_TXS: u8 = 0x54;

impl PowMessage {
    pub fn name(&self) -> &'static str {
        match self {
            PowMessage::Block(_) => "block",
            PowMessage::GetBlocks(_) => "get_blocks",
            PowMessage::Blocks(_) => "blocks",
            PowMessage::Tip { .. } => "tip",
            PowMessage::Txs(_) => "txs",
        }
    }
}

impl Encode for PowMessage {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            PowMessage::Block(b) => {
                out.push(TAG_BLOCK);
                b.encode(out);
            }
            PowMessage::GetBlocks(locator) => {
                out.push(TAG_GET_BLOCKS);
                codec::put_seq(out, locator);
            }
            PowMessage::Blocks(blocks) => {
                out.push(TAG_BLOCKS);
                codec::put_seq(out, blocks);
            }
            PowMessage::Tip { height, hash, work } => {
                out.push(TAG_TIP);
                codec::put_u64(out, *height);
                hash.encode(out);
                work.encode(out);
            }
            PowMessage::Txs(txs) => {
                out.push(TAG_TXS);
                codec::put_seq(out, txs);
            }
        }
    }
}

impl Decode for PowMessage {
    const MIN_LEN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            TAG_BLOCK => PowMessage::Block(Box::new(Block::decode(r)?)),
            TAG_GET_BLOCKS => PowMessage::GetBlocks(r.seq("locator", LOCATOR_MAX)?),
            TAG_BLOCKS => PowMessage::Blocks(r.seq("blocks", BLOCKS_PER_REPLY_MAX)?),
            TAG_TIP => PowMessage::Tip {
                height: r.u64()?,
                hash: Hash::decode(r)?,
                work: Hash::decode(r)?,
            },
            TAG_TXS => PowMessage::Txs(r.seq("relayed transactions", TXS_MAX)?),
            tag => {
                return Err(DecodeError::BadTag {
                    what: "pow message",
                    tag,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_bytes_are_refused() {
        let net =
            quire_chain::testkit::TestNet::with_pow(4, 2, 0, quire_chain::testkit::easy_pow(2));
        let block = net.genesis.block();
        for m in [
            PowMessage::Block(Box::new(block.clone())),
            PowMessage::GetBlocks(vec![Hash([1; 32]), Hash([2; 32])]),
            PowMessage::Blocks(vec![block.clone(), block]),
            PowMessage::Tip {
                height: 7,
                hash: Hash([3; 32]),
                work: Hash([4; 32]),
            },
            PowMessage::Txs(vec![net.transfer(0, 1, 5, 0)]),
        ] {
            let bytes = m.to_bytes();
            assert_eq!(PowMessage::from_bytes(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(PowMessage::from_bytes(&bytes[..cut]).is_err());
            }
        }
        assert!(PowMessage::from_bytes(&[0x02, 0, 0]).is_err());
        let mut huge = vec![TAG_GET_BLOCKS];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(PowMessage::from_bytes(&huge).is_err());
    }
}
