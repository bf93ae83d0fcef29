//! Framing over a real QUIC stream: round trips, the cap, and broken input.

use super::{eventually, raw_pair, within};
use crate::transport::frame::{FRAME_BYTES_MAX, FrameError, read_frame, write_frame};

/// Frames of any size up to the cap, the empty one included, come out as they went in, and a
/// clean finish between frames reads as the end.
#[tokio::test]
async fn frames_round_trip_and_a_finish_reads_as_end() {
    let (_server, _client, client_conn, server_conn) = raw_pair().await;
    let mut send = client_conn.open_uni().await.unwrap();
    let frames = [vec![], b"prepare".to_vec(), vec![7u8; 300_000]];
    for frame in &frames {
        write_frame(&mut send, frame).await.unwrap();
    }
    send.finish().unwrap();
    let mut recv = within("stream", server_conn.accept_uni()).await.unwrap();
    for frame in &frames {
        let got = within("frame", read_frame(&mut recv, FRAME_BYTES_MAX)).await;
        assert_eq!(got.unwrap().as_deref(), Some(frame.as_slice()));
    }
    let end = within("end", read_frame(&mut recv, FRAME_BYTES_MAX)).await;
    assert_eq!(end.unwrap(), None);
}

/// A length over the cap is refused as soon as the prefix is read: the reader neither waits for
/// nor allocates the announced 4 GiB (the sender never sends them, and the stream stays open).
#[tokio::test]
async fn an_oversized_length_is_refused_before_the_body() {
    let (_server, _client, client_conn, server_conn) = raw_pair().await;
    let mut send = client_conn.open_uni().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut recv = within("stream", server_conn.accept_uni()).await.unwrap();
    let got = within("refusal", read_frame(&mut recv, FRAME_BYTES_MAX)).await;
    match got {
        Err(FrameError::TooLarge {
            len_bytes,
            max_bytes,
        }) => assert_eq!(
            (len_bytes, max_bytes),
            (u64::from(u32::MAX), FRAME_BYTES_MAX)
        ),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// A stream that ends inside the prefix or inside the body is an error, not a panic and not a
/// short frame.
#[tokio::test]
async fn truncated_frames_are_errors() {
    let (_server, _client, client_conn, server_conn) = raw_pair().await;
    let cases: [(&[u8], usize, usize); 2] = [
        (&[0, 0], 4, 2),
        (&[0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 100, 10),
    ];
    for (bytes, expected, got) in cases {
        let mut send = client_conn.open_uni().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let mut recv = within("stream", server_conn.accept_uni()).await.unwrap();
        match within("error", read_frame(&mut recv, FRAME_BYTES_MAX)).await {
            Err(FrameError::Truncated {
                expected_bytes,
                got_bytes,
            }) => assert_eq!((expected_bytes, got_bytes), (expected, got)),
            other => panic!("expected Truncated, got {other:?}"),
        }
    }
}

/// A budget that records what the reader holds.
struct Recording(std::sync::atomic::AtomicUsize, usize);

impl crate::transport::frame::Budget for Recording {
    fn take(&self, bytes: usize) -> bool {
        let held = self.0.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst) + bytes;
        if held > self.1 {
            self.0.fetch_sub(bytes, std::sync::atomic::Ordering::SeqCst);
            return false;
        }
        true
    }
    fn give_back(&self, bytes: usize) {
        self.0.fetch_sub(bytes, std::sync::atomic::Ordering::SeqCst);
    }
    fn size(&self) -> usize {
        self.1
    }
}

/// A frame announcing 16 MiB with a few bytes behind it holds those bytes, not 16 MiB: the
/// buffer grows as data arrives. And a budget smaller than the frame stops it with an error.
#[tokio::test]
async fn an_announced_length_allocates_only_what_arrives() {
    use crate::transport::frame::read_frame_within;
    let (_server, _client, client_conn, server_conn) = raw_pair().await;
    let mut send = client_conn.open_uni().await.unwrap();
    send.write_all(&(16u32 << 20).to_be_bytes()).await.unwrap();
    send.write_all(&[7u8; 100]).await.unwrap();
    let mut recv = within("stream", server_conn.accept_uni()).await.unwrap();
    let budget = std::sync::Arc::new(Recording(Default::default(), usize::MAX));
    let held = budget.clone();
    let reading = tokio::spawn(async move {
        read_frame_within(&mut recv, FRAME_BYTES_MAX, &*held)
            .await
            .map(|f| f.map(|(bytes, _)| bytes.len()))
    });
    // The frame never completes; once the bytes have arrived the reader holds just those.
    eventually("the 100 bytes to arrive", || {
        budget.0.load(std::sync::atomic::Ordering::SeqCst) == 100
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !reading.is_finished(),
        "a 16 MiB frame completed from 100 bytes"
    );
    assert_eq!(budget.0.load(std::sync::atomic::Ordering::SeqCst), 100);
    reading.abort();

    let mut send = client_conn.open_uni().await.unwrap();
    send.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
    send.write_all(&[7u8; 300_000]).await.unwrap();
    let mut recv = within("stream", server_conn.accept_uni()).await.unwrap();
    let small = Recording(Default::default(), 200_000);
    let got = within(
        "refusal",
        read_frame_within(&mut recv, FRAME_BYTES_MAX, &small),
    )
    .await;
    assert!(
        matches!(
            got,
            Err(FrameError::OverBudget {
                budget_bytes: 200_000
            })
        ),
        "{:?}",
        got.map(|f| f.map(|(b, _)| b.len()))
    );
    assert_eq!(small.0.load(std::sync::atomic::Ordering::SeqCst), 0);
}
