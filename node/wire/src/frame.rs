//! Length-prefixed frames on QUIC streams: a u32 big-endian length, then that many bytes.
//!
//! A stream carries many frames, so one long-lived stream per peer amortises the per-message cost
//! of QUIC. The reader checks the announced length against its cap, and then grows its buffer
//! only as the bytes arrive: a peer that announces 16 MiB and sends nothing costs nothing, and
//! one that trickles costs what it sent (callers can bound that too, with a [`Budget`]).

use quinn::{ReadExactError, RecvStream, SendStream};
use thiserror::Error;

/// The default cap on a frame's length (a block of many transactions fits comfortably).
pub const FRAME_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Bytes of the length prefix.
const LEN_BYTES: usize = 4;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {len_bytes} bytes exceeds the cap of {max_bytes} bytes")]
    TooLarge { len_bytes: u64, max_bytes: usize },
    #[error("stream ended inside a frame: {got_bytes} of {expected_bytes} bytes")]
    Truncated {
        expected_bytes: usize,
        got_bytes: usize,
    },
    #[error("reading a frame: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("the reader's byte budget is spent ({budget_bytes} bytes)")]
    OverBudget { budget_bytes: usize },
    #[error("writing a frame: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Writes one frame. Frames longer than a u32 can count are refused.
pub async fn write_frame(stream: &mut SendStream, frame: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(frame.len()).map_err(|_| FrameError::TooLarge {
        len_bytes: frame.len() as u64,
        max_bytes: u32::MAX as usize,
    })?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(frame).await?;
    Ok(())
}

/// Bytes a reader may hold in partly read frames, shared by several streams (all of one client's
/// streams, say): each frame takes what it has received from it, and gives it back when done.
pub trait Budget: Sync {
    /// Takes `bytes` more, or refuses.
    fn take(&self, bytes: usize) -> bool;
    fn give_back(&self, bytes: usize);
    /// The budget's size, for errors.
    fn size(&self) -> usize;
}

/// No limit beyond the frame cap.
pub struct Unlimited;

impl Budget for Unlimited {
    fn take(&self, _: usize) -> bool {
        true
    }
    fn give_back(&self, _: usize) {}
    fn size(&self) -> usize {
        usize::MAX
    }
}

/// A frame's claim on a [`Budget`], given back when the frame is dropped or handed on.
pub struct Claim<'a> {
    budget: &'a dyn Budget,
    bytes: usize,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Bytes read at once while a frame grows (a bound on what one read can make us allocate ahead).
const CHUNK_BYTES: usize = 64 * 1024;

/// Reads one frame of at most `max_bytes`. `Ok(None)` means the peer finished the stream cleanly
/// between frames; a stream that ends inside a frame is [`FrameError::Truncated`].
pub async fn read_frame(
    stream: &mut RecvStream,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    Ok(read_frame_within(stream, max_bytes, &Unlimited)
        .await?
        .map(|(frame, _)| frame))
}

/// As [`read_frame`], holding the frame's bytes against `budget` while it is read; the claim
/// returned with the frame keeps them taken until the caller drops it.
pub async fn read_frame_within<'a>(
    stream: &mut RecvStream,
    max_bytes: usize,
    budget: &'a dyn Budget,
) -> Result<Option<(Vec<u8>, Claim<'a>)>, FrameError> {
    let mut prefix = [0u8; LEN_BYTES];
    match stream.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(truncated_or_read(e, LEN_BYTES)),
    }
    let len_bytes = u32::from_be_bytes(prefix);
    let len = usize::try_from(len_bytes)
        .ok()
        .filter(|len| *len <= max_bytes)
        .ok_or(FrameError::TooLarge {
            len_bytes: u64::from(len_bytes),
            max_bytes,
        })?;
    let mut claim = Claim { budget, bytes: 0 };
    let mut frame = Vec::with_capacity(len.min(CHUNK_BYTES));
    while frame.len() < len {
        let want = (len - frame.len()).min(CHUNK_BYTES);
        let chunk = match stream.read_chunk(want, true).await? {
            Some(chunk) => chunk.bytes,
            None => {
                return Err(FrameError::Truncated {
                    expected_bytes: len,
                    got_bytes: frame.len(),
                });
            }
        };
        if !budget.take(chunk.len()) {
            return Err(FrameError::OverBudget {
                budget_bytes: budget.size(),
            });
        }
        claim.bytes += chunk.len();
        frame.extend_from_slice(&chunk);
    }
    Ok(Some((frame, claim)))
}

fn truncated_or_read(error: ReadExactError, expected_bytes: usize) -> FrameError {
    match error {
        ReadExactError::FinishedEarly(got_bytes) => FrameError::Truncated {
            expected_bytes,
            got_bytes,
        },
        ReadExactError::ReadError(e) => FrameError::Read(e),
    }
}
