//! The replica mesh: delivery, broadcast, hostile input, restarts, and the link controls.

use std::collections::BTreeSet;
use std::time::Duration;

use quire_chain::ReplicaId;
use tokio::time::Instant;

use super::{Net, client_endpoint, eventually, frame, key, next_frame, warm_up, within};
use crate::transport::codes;
use crate::transport::frame::write_frame;
use crate::transport::mesh::{Mesh, MeshEvents};
use crate::transport::tls::{SERVER_NAME, replica_client_config};

/// Frames go both ways between two replicas, and one broadcast reaches every other replica, each
/// frame labelled with its authenticated sender.
#[tokio::test]
async fn three_replicas_exchange_frames_and_broadcast_reaches_everyone() {
    let net = Net::new(3);
    let (meshes, mut events) = net.start_all();
    meshes[0].send(1, frame("0 to 1"));
    meshes[1].send(0, frame("1 to 0"));
    meshes[2].broadcast(frame("2 to all"));

    let mut at_0 = BTreeSet::new();
    let mut at_1 = BTreeSet::new();
    for _ in 0..2 {
        at_0.insert(next_frame(&mut events[0]).await);
        at_1.insert(next_frame(&mut events[1]).await);
    }
    assert_eq!(
        at_0,
        BTreeSet::from([(1, b"1 to 0".to_vec()), (2, b"2 to all".to_vec())])
    );
    assert_eq!(
        at_1,
        BTreeSet::from([(0, b"0 to 1".to_vec()), (2, b"2 to all".to_vec())])
    );
    assert!(events[2].frames.pop(std::time::Duration::ZERO).is_none());

    let stats = meshes[2].stats();
    for peer in [0, 1] {
        assert_eq!(stats.peers[&peer].frames_sent, 1);
        assert_eq!(stats.peers[&peer].bytes_sent, 8);
    }
    assert_eq!(meshes[0].stats().peers[&2].frames_received, 1);
}

/// With a consumer slower than the sender, frames wait (back-pressure) instead of being dropped.
#[tokio::test]
async fn a_slow_consumer_gets_every_frame_in_order() {
    let net = Net::new(2);
    let (mesh_0, _events_0) = net.start(0);
    let mut config = net.config(1);
    config.inbound_peer_bytes = 4;
    let (mesh_1, mut events_1) = Mesh::start(config).unwrap();
    for i in 0..300u32 {
        mesh_0.send(1, std::sync::Arc::new(i.to_be_bytes().to_vec()));
    }
    for i in 0..300u32 {
        assert_eq!(
            next_frame(&mut events_1).await,
            (0, i.to_be_bytes().to_vec())
        );
    }
    assert_eq!(mesh_1.stats().peers[&0].frames_received, 300);
    assert_eq!(mesh_0.stats().peers[&1].dropped_queue_full, 0);
}

/// A full peer queue drops new frames and counts them; the caller never waits. (Replica 1 is not
/// running, so its queue cannot drain.)
#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let net = Net::new(2);
    let mut config = net.config(0);
    config.peer_queue_frames = 4;
    let (mesh, _events) = Mesh::start(config).unwrap();
    for _ in 0..10 {
        mesh.send(1, frame("x"));
    }
    let stats = mesh.stats();
    assert_eq!(stats.peers[&1].dropped_queue_full, 6);
    assert_eq!(stats.queued_frames[&1], 4);
}

/// A replica that announces a frame over the cap has its connection closed and the frame
/// counted; one that sends a truncated frame only loses that stream. Either way the mesh keeps
/// serving: the same replica's next stream and another replica's frames get through.
#[tokio::test]
async fn oversized_and_truncated_frames_do_not_stop_the_mesh() {
    let net = Net::new(3);
    let mut config = net.config(0);
    config.frame_bytes_max = 1024;
    let (mesh_0, mut events_0) = Mesh::start(config).unwrap();
    let (mesh_2, _events_2) = net.start(2);

    // Replica 1, played by hand, announces 1 GiB.
    let client = client_endpoint();
    let as_1 = || replica_client_config(&key(1), key(0).public()).unwrap();
    let connecting = client
        .connect_with(as_1(), net.addr(0), SERVER_NAME)
        .unwrap();
    let conn = within("handshake", connecting).await.unwrap();
    let mut send = conn.open_uni().await.unwrap();
    send.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    match within("the close", conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, codes::FRAME_TOO_LARGE)
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    assert_eq!(mesh_0.stats().peers[&1].dropped_oversized, 1);

    // Then a truncated frame on one stream, and a good frame on the next.
    let connecting = client
        .connect_with(as_1(), net.addr(0), SERVER_NAME)
        .unwrap();
    let conn = within("handshake", connecting).await.unwrap();
    let mut broken = conn.open_uni().await.unwrap();
    broken.write_all(&[0, 0, 0, 50, 1, 2, 3]).await.unwrap();
    broken.finish().unwrap();
    eventually("the truncated stream to be counted", || {
        mesh_0.stats().peers[&1].connection_errors == 1
    })
    .await;
    let mut good = conn.open_uni().await.unwrap();
    write_frame(&mut good, b"after garbage").await.unwrap();
    assert_eq!(
        next_frame(&mut events_0).await,
        (1, b"after garbage".to_vec())
    );

    // Our own over-cap frames are never sent; other replicas still get through.
    mesh_0.send(2, std::sync::Arc::new(vec![0; 2000]));
    assert_eq!(mesh_0.stats().peers[&2].dropped_oversized, 1);
    mesh_2.send(0, frame("still here"));
    assert_eq!(next_frame(&mut events_0).await, (2, b"still here".to_vec()));
}

/// A peer that goes away and comes back on the same port receives frames again: the sender
/// notices the lost connection and redials.
#[tokio::test]
async fn a_restarted_peer_receives_again_after_reconnect() {
    let net = Net::new(2);
    let (mesh_0, _events_0) = net.start(0);
    let (mesh_1, mut events_1) = net.start(1);
    mesh_0.send(1, frame("before"));
    assert_eq!(next_frame(&mut events_1).await, (0, b"before".to_vec()));

    mesh_1.shutdown().await;
    drop((mesh_1, events_1));
    let (_mesh_1, events_1) = start_again(&net, 1).await;

    // Frames written while the link was down are lost (PBFT retransmits); keep sending until one
    // makes it through the new connection.
    let received = send_until_one_arrives(&mesh_0, &events_1, "after").await;
    assert_eq!(received, (0, b"after".to_vec()));
    assert!(mesh_0.stats().peers[&1].reconnects >= 1);
}

/// Frames queued for a peer whose link is down are sent when it is back only if they are
/// fresh: a backlog older than the bound is dropped and counted, so a replica restarted after a
/// long outage is not fed thousands of votes its peers have long moved past.
#[tokio::test]
async fn frames_that_waited_too_long_for_a_link_are_dropped_not_sent() {
    let net = Net::new(2);
    let stale_after = Duration::from_millis(300);
    let mut config = net.config(0);
    config.peer_frame_stale_after = stale_after;
    let (mesh_0, _events_0) = Mesh::start(config).unwrap();
    let (mesh_1, mut events_1) = net.start(1);
    mesh_0.send(1, frame("before"));
    assert_eq!(next_frame(&mut events_1).await, (0, b"before".to_vec()));

    mesh_1.shutdown().await;
    drop((mesh_1, events_1));
    eventually("the link to be down", || {
        mesh_0.stats().peers[&1].connected == 0
    })
    .await;
    for _ in 0..10 {
        mesh_0.send(1, frame("stale"));
    }
    tokio::time::sleep(stale_after * 2).await;
    let (_mesh_1, events_1) = start_again(&net, 1).await;
    // Fresh frames queued now (the link may still be redialling) do get through, and first:
    // one stream per link keeps order, so a stale frame sent would have come before them.
    let received = send_until_one_arrives(&mesh_0, &events_1, "fresh").await;
    assert_eq!(received, (0, b"fresh".to_vec()));
    // At least the ten (a slow machine may also age a fresh one while the link comes up).
    assert!(mesh_0.stats().peers[&1].dropped_stale >= 10);
}

/// Starts replica `id` again once its old endpoint has released its socket (after its
/// connections have drained).
async fn start_again(net: &Net, id: ReplicaId) -> (Mesh, MeshEvents) {
    within("the port to be free again", async {
        loop {
            match Mesh::start(net.config(id)) {
                Ok(started) => break started,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
}

/// Sends `text` from replica 0 to replica 1 every 100 ms until a frame reaches replica 1 (the
/// link may still be coming up): the first frame it gets.
async fn send_until_one_arrives(
    mesh_0: &Mesh,
    events_1: &MeshEvents,
    text: &str,
) -> (ReplicaId, Vec<u8>) {
    within("a frame after the restart", async {
        loop {
            mesh_0.send(1, frame(text));
            let wait = Duration::from_millis(100);
            if let Ok(Some(received)) = tokio::time::timeout(wait, events_1.frames.recv()).await {
                break received;
            }
        }
    })
    .await
}

/// Blocking a peer drops frames to it and from it, on our side only; unblocking restores the
/// link, and what was dropped never shows up later.
#[tokio::test]
async fn blocked_peers_get_nothing_and_send_nothing() {
    let net = Net::new(3);
    let (meshes, mut events) = net.start_all();
    warm_up(&meshes, &mut events).await;

    meshes[0].set_blocked(BTreeSet::from([1]));
    meshes[0].send(1, frame("dropped out"));
    meshes[0].send(2, frame("to 2"));
    meshes[1].send(0, frame("dropped in"));
    assert_eq!(next_frame(&mut events[2]).await, (0, b"to 2".to_vec()));
    eventually("the inbound drop", || {
        meshes[0].stats().peers[&1].dropped_blocked_in == 1
    })
    .await;
    assert_eq!(meshes[0].stats().peers[&1].dropped_blocked_out, 1);

    meshes[0].set_blocked(BTreeSet::new());
    meshes[0].send(1, frame("out again"));
    meshes[1].send(0, frame("in again"));
    // One stream per link keeps order: had a dropped frame been sent, it would come first.
    assert_eq!(next_frame(&mut events[1]).await, (0, b"out again".to_vec()));
    assert_eq!(next_frame(&mut events[0]).await, (1, b"in again".to_vec()));
}

/// A delayed link writes frames no earlier than the delay after they were queued; other links
/// are not held up.
#[tokio::test]
async fn delayed_frames_arrive_later() {
    let net = Net::new(3);
    let (meshes, mut events) = net.start_all();
    warm_up(&meshes, &mut events).await;

    let delay = Duration::from_millis(600);
    meshes[0].set_delay(1, delay);
    let start = Instant::now();
    meshes[0].send(1, frame("slow"));
    meshes[0].send(2, frame("fast"));
    assert_eq!(next_frame(&mut events[2]).await, (0, b"fast".to_vec()));
    assert_eq!(next_frame(&mut events[1]).await, (0, b"slow".to_vec()));
    assert!(
        start.elapsed() >= delay,
        "arrived after {:?}",
        start.elapsed()
    );

    meshes[0].set_delay(1, Duration::ZERO);
    meshes[0].send(1, frame("prompt"));
    assert_eq!(next_frame(&mut events[1]).await, (0, b"prompt".to_vec()));
}

/// Replica 0 on a runtime that lives, replica 1 on one that is dropped after a frame got
/// through: a crash, since the runtime stops first and the CONNECTION_CLOSE of the drop is never
/// sent. Returns the live runtime and replica 0 (with its events, kept alive).
fn crash_peer_1(net: &Net) -> (tokio::runtime::Runtime, Mesh, MeshEvents) {
    let runtime = |name| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    let main = runtime("main");
    let doomed = runtime("doomed");
    let (mesh_0, events_0) = main.block_on(async { net.start(0) });
    let (mesh_1, mut events_1) = doomed.block_on(async { net.start(1) });
    main.block_on(async {
        mesh_0.send(1, frame("before"));
        assert_eq!(next_frame(&mut events_1).await, (0, b"before".to_vec()));
    });
    drop(doomed);
    drop((mesh_1, events_1));
    (main, mesh_0, events_0)
}

/// Restarts replica 1 and sends it "after" until one arrives: how long that took.
async fn heard_after_restart(net: &Net, mesh_0: &Mesh) -> Duration {
    let (_mesh_1, events_1) = net.start(1);
    let restarted = Instant::now();
    let received = within("a frame after the restart", async {
        loop {
            mesh_0.send(1, frame("after"));
            let wait = Duration::from_millis(50);
            if let Ok(Some(received)) = tokio::time::timeout(wait, events_1.frames.recv()).await
                && received.1 == b"after"
            {
                break received;
            }
        }
    })
    .await;
    assert_eq!(received, (0, b"after".to_vec()));
    restarted.elapsed()
}

/// A peer that crashes (no goodbye) and restarts is noticed within about a keep-alive, not an
/// idle timeout: the new incarnation derives the same stateless-reset key from the replica
/// secret and resets the connections of the old one.
#[test]
fn a_crashed_peer_is_reset_by_its_next_incarnation() {
    let net = Net::new(2);
    let (main, mesh_0, _events_0) = crash_peer_1(&net);
    let elapsed = main.block_on(heard_after_restart(&net, &mesh_0));
    // Typically ~0.1 s; without the reset it would take the 10 s idle timeout.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

/// A peer down for longer than the idle timeout of replica links is heard from again as soon
/// as it is back: its new incarnation dials us, and that dial makes our sender dial it at once
/// instead of finishing a back-off or a handshake with the dead incarnation (which took up to
/// 4.5 s after a 2–3 s crash in chaos runs, and a view the restarted replica led waited for it).
#[test]
fn a_peer_back_after_a_long_crash_is_dialled_at_once() {
    let net = Net::new(2);
    let (main, mesh_0, _events_0) = crash_peer_1(&net);
    let elapsed = main.block_on(async {
        // Down for longer than the link's idle timeout, with frames queued for it meanwhile.
        for _ in 0..30 {
            mesh_0.send(1, frame("while down"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        heard_after_restart(&net, &mesh_0).await
    });
    println!("heard from the restarted peer after {elapsed:?}");
    // A few milliseconds here; without the wake-up about 0.5 s (the rest of a back-off),
    // and up to the 2.5 s idle timeout (a handshake with the dead incarnation).
    assert!(elapsed < Duration::from_millis(300), "took {elapsed:?}");
}

/// A replica's new connection supersedes its old one, so a faulty replica cannot pile up
/// connections; frames on the new one still arrive.
#[tokio::test]
async fn a_new_connection_from_a_replica_supersedes_the_old_one() {
    let net = Net::new(2);
    let (_mesh, mut events) = net.start(0);
    let client = client_endpoint();
    let as_1 = || replica_client_config(&key(1), key(0).public()).unwrap();
    let dial = || {
        client
            .connect_with(as_1(), net.addr(0), SERVER_NAME)
            .unwrap()
    };
    let old = within("handshake", dial()).await.unwrap();
    let mut send = old.open_uni().await.unwrap();
    write_frame(&mut send, b"old").await.unwrap();
    assert_eq!(next_frame(&mut events).await, (1, b"old".to_vec()));

    let new = within("handshake", dial()).await.unwrap();
    let mut send = new.open_uni().await.unwrap();
    write_frame(&mut send, b"new").await.unwrap();
    assert_eq!(next_frame(&mut events).await, (1, b"new".to_vec()));
    match within("the old connection to close", old.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, codes::SUPERSEDED)
        }
        other => panic!("expected an application close, got {other:?}"),
    }
}
