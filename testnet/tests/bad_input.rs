//! Bad input at a live replica: garbage, truncated, oversized and replayed frames from a QUIC
//! client, a connection that claims to be a replica with an unknown key, malformed requests —
//! all refused and counted while the replica keeps serving; and a replica started on a foreign
//! or corrupt data directory refuses with a clear message.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use quire_chain::Keypair;
use quire_chain::codec::{Decode, Encode};
use quire_wire::rpc::{Request, Response};
use quire_wire::tls::{SERVER_NAME, client_config, replica_client_config};
use quire_wire::{read_frame, write_frame};

async fn connect(
    net: &support::Net,
    config: quinn::ClientConfig,
) -> Result<quinn::Connection, String> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let addr = net.tn.network.replicas[0].quic;
    let connecting = endpoint
        .connect(addr, SERVER_NAME)
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_clients_is_refused_and_counted_and_the_replica_keeps_serving() {
    let net = support::start("bad-input", 4, 2).await;
    let key = net.tn.network.replicas[0].key;
    let conn = connect(&net, client_config(key).unwrap()).await.unwrap();

    // A frame that is not a request: answered with an error, the stream stays usable.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_frame(&mut send, b"\x42garbage").await.unwrap();
    let answer = read_frame(&mut recv, 1 << 20).await.unwrap().unwrap();
    assert!(matches!(
        Response::from_bytes(&answer),
        Ok(Response::Error(_))
    ));
    write_frame(&mut send, &Request::Status.to_bytes())
        .await
        .unwrap();
    let answer = read_frame(&mut recv, 1 << 20).await.unwrap().unwrap();
    assert!(matches!(
        Response::from_bytes(&answer),
        Ok(Response::Status(_))
    ));

    // An oversized length prefix: the stream is refused before anything is allocated.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let _ = send.finish();
    let closed = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut recv, 1 << 20)).await;
    assert!(matches!(closed, Ok(Err(_)) | Ok(Ok(None))), "{closed:?}");

    // A truncated frame: length 100, ten bytes, end of stream.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&100u32.to_be_bytes()).await.unwrap();
    send.write_all(&[0u8; 10]).await.unwrap();
    let _ = send.finish();
    let closed = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut recv, 1 << 20)).await;
    assert!(matches!(closed, Ok(Err(_)) | Ok(Ok(None))), "{closed:?}");

    // A replayed submission: accepted once into the mempool, the replay dropped as a duplicate.
    let nonce = net.nonce(1).await;
    let tx = net.transfer(1, 0, 3, nonce);
    let submit = Request::Submit(vec![tx.clone()]).to_bytes();
    for _ in 0..2 {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        write_frame(&mut send, &submit).await.unwrap();
        let answer = read_frame(&mut recv, 1 << 20).await.unwrap().unwrap();
        assert!(matches!(
            Response::from_bytes(&answer),
            Ok(Response::Submitted(_))
        ));
    }
    net.wait_for(
        "the transfer to commit",
        Duration::from_secs(30),
        || async { net.nonce(1).await > nonce },
    )
    .await;
    // Once committed, a replay of it is refused outright.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_frame(&mut send, &submit).await.unwrap();
    let answer =
        Response::from_bytes(&read_frame(&mut recv, 1 << 20).await.unwrap().unwrap()).unwrap();
    assert!(
        matches!(&answer, Response::Submitted(r) if matches!(r[0], Err(quire_wire::rpc::Refusal::StaleNonce { .. }))),
        "{answer:?}"
    );

    // A client claiming to be a replica with a key outside the genesis is refused at the
    // handshake.
    let stranger = Keypair::generate();
    let refused = connect(&net, replica_client_config(&stranger, key).unwrap()).await;
    if let Ok(c) = &refused {
        // If the handshake completed on our side, the server closes the connection at once.
        let r = tokio::time::timeout(Duration::from_secs(5), c.closed()).await;
        assert!(r.is_ok(), "a stranger's replica connection stayed open");
    }

    // Everything was counted, and the replica still serves.
    let metrics = net.tn.http(0, "GET", "/metrics").unwrap();
    assert!(
        support::metric(
            &metrics,
            "quire_rpc_errors_total{reason=\"malformed_request\"}"
        ) >= 1
    );
    // The oversized prefix and the truncated frame, each under its own reason.
    assert!(
        support::metric(
            &metrics,
            "quire_rpc_errors_total{reason=\"oversized_frame\"}"
        ) >= 1
    );
    assert!(support::metric(&metrics, "quire_rpc_errors_total{reason=\"bad_frame\"}") >= 1);
    assert!(
        support::metric(
            &metrics,
            "quire_client_refused_total{reason=\"stale_nonce\"}"
        ) >= 1
    );
    assert!(
        support::metric(&metrics, "quire_transport_handshakes_failed_total") >= 1,
        "{metrics}"
    );
    assert!(net.status(0).await.is_some());
    let receipt = net
        .client
        .transfer(
            &net.keys[0],
            net.address(1),
            1,
            Some(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert!(receipt.committed.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refuses_a_foreign_or_corrupt_data_directory() {
    let a = support::start("foreign-a", 4, 1).await;
    let b = support::start("foreign-b", 4, 1).await;
    let node = quire_testnet::process::node_binary().unwrap();
    let run = |config: std::path::PathBuf| {
        std::process::Command::new(&node)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap()
    };
    // Replica 3 of network A started on replica 3 of network B's data.
    a.tn.kill(3).unwrap();
    b.tn.kill(3).unwrap();
    let a_data = a.tn.layout.data(3);
    std::fs::remove_dir_all(&a_data).unwrap();
    copy_dir(&b.tn.layout.data(3), &a_data);
    let out = run(a.tn.layout.config(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("another chain"), "{stderr}");

    // Corrupt: every file of the store overwritten with garbage.
    for entry in std::fs::read_dir(&a_data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"\x00garbage\xff").unwrap();
        }
    }
    let out = run(a.tn.layout.config(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("data directory"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
