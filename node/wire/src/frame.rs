//! Length-prefixed frames on QUIC streams: a u32 big-endian length, then that many bytes.
//!
//! A stream carries many frames, so one long-lived stream per peer amortises the per-message cost
//! of QUIC. The reader checks the announced length against its cap *before* allocating, so a peer
//! cannot make us reserve gigabytes by sending four bytes.

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

/// Reads one frame of at most `max_bytes`. `Ok(None)` means the peer finished the stream cleanly
/// between frames; a stream that ends inside a frame is [`FrameError::Truncated`].
pub async fn read_frame(
    stream: &mut RecvStream,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
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
    let mut frame = vec![0u8; len];
    stream
        .read_exact(&mut frame)
        .await
        .map_err(|e| truncated_or_read(e, len))?;
    Ok(Some(frame))
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
