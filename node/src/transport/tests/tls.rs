//! Identities: certificates carry the replica key, servers are pinned, client certificates are
//! accepted only for validators, plain clients need none.

use std::collections::BTreeMap;

use rustls::pki_types::CertificateDer;

use super::{Net, client_endpoint, key, raw_pair, within};
use crate::transport::frame::{FRAME_BYTES_MAX, read_frame, write_frame};
use crate::transport::tls::{
    SERVER_NAME, certificate_key, client_config, peer_replica, replica_client_config, self_signed,
};

/// The certificate's key is the replica key; anything else (garbage, truncated DER, another key
/// type) yields no key rather than a panic.
#[test]
fn certificates_carry_the_replica_key_and_garbage_carries_none() {
    let (mut certs, _key) = self_signed(&key(3)).unwrap();
    let der = certs.remove(0);
    assert_eq!(certificate_key(&der), Some(key(3).public().to_bytes()));
    for end in [0, 1, 10, der.len() / 2, der.len() - 1] {
        assert_eq!(certificate_key(&CertificateDer::from(&der[..end])), None);
    }
    assert_eq!(certificate_key(&CertificateDer::from(vec![0x30; 64])), None);
    let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
    let other = params.self_signed(&ecdsa).unwrap();
    assert_eq!(certificate_key(other.der()), None);
}

/// A replica dialing with its certificate is recognised as that replica by the server.
#[tokio::test]
async fn a_validator_certificate_names_the_replica() {
    let (_server, _client, _client_conn, server_conn) = raw_pair().await;
    let allowed = BTreeMap::from([(key(1).public().to_bytes(), 1)]);
    assert_eq!(peer_replica(&server_conn, &allowed), Some(1));
    assert_eq!(peer_replica(&server_conn, &BTreeMap::new()), None);
}

/// A certificate whose key is not a validator's is refused at the handshake: the connection is
/// closed by the server, and the node sees neither a frame nor a client.
#[tokio::test]
async fn a_stranger_certificate_is_refused() {
    let net = Net::new(2);
    let (mesh, mut events) = net.start(0);
    let client = client_endpoint();
    let stranger = key(99);
    let config = replica_client_config(&stranger, key(0).public()).unwrap();
    let connecting = client
        .connect_with(config, net.addr(0), SERVER_NAME)
        .unwrap();
    // TLS 1.3 may let the client finish before the server judges its certificate, so the refusal
    // shows either as a failed connect or as a connection the server closes.
    if let Ok(conn) = within("handshake", connecting).await {
        if let Ok(mut send) = conn.open_uni().await {
            let _ = write_frame(&mut send, b"let me in").await;
        }
        let reason = within("server close", conn.closed()).await;
        assert!(!matches!(reason, quinn::ConnectionError::LocallyClosed));
    }
    super::eventually("the refusal to be counted", || {
        mesh.stats().handshakes_failed == 1
    })
    .await;
    assert!(events.frames.pop(std::time::Duration::ZERO).is_none());
    assert!(events.clients.try_recv().is_err());
}

/// A client that pins another key than the server's does not connect, with or without a
/// certificate of its own.
#[tokio::test]
async fn a_client_pinning_the_wrong_key_fails_to_connect() {
    let net = Net::new(2);
    let (_mesh, _events) = net.start(0);
    let client = client_endpoint();
    let wrong = key(1).public();
    let configs = [
        client_config(wrong).unwrap(),
        replica_client_config(&key(1), wrong).unwrap(),
    ];
    for config in configs {
        let connecting = client
            .connect_with(config, net.addr(0), SERVER_NAME)
            .unwrap();
        assert!(within("handshake", connecting).await.is_err());
    }
}

/// A plain client (no certificate) is handed to the node, which can serve it on a bi stream.
#[tokio::test]
async fn a_plain_client_reaches_the_node_and_gets_an_echo() {
    let net = Net::new(2);
    let (_mesh, mut events) = net.start(0);
    let client = client_endpoint();
    let config = client_config(key(0).public()).unwrap();
    let connecting = client
        .connect_with(config, net.addr(0), SERVER_NAME)
        .unwrap();
    let conn = within("handshake", connecting).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_frame(&mut send, b"ping").await.unwrap();
    send.finish().unwrap();

    let server_conn = within("client connection", events.clients.recv())
        .await
        .unwrap();
    let allowed = BTreeMap::from([(key(1).public().to_bytes(), 1)]);
    assert_eq!(peer_replica(&server_conn, &allowed), None);
    tokio::spawn(echo(server_conn));

    let reply = within("echo", read_frame(&mut recv, FRAME_BYTES_MAX)).await;
    assert_eq!(reply.unwrap().as_deref(), Some(&b"ping"[..]));
    let end = within("end", read_frame(&mut recv, FRAME_BYTES_MAX)).await;
    assert_eq!(end.unwrap(), None);
}

/// The trivial RPC service of the test: one frame in, the same frame out.
async fn echo(conn: quinn::Connection) {
    let (mut send, mut recv) = conn.accept_bi().await.unwrap();
    let frame = read_frame(&mut recv, FRAME_BYTES_MAX)
        .await
        .unwrap()
        .unwrap();
    write_frame(&mut send, &frame).await.unwrap();
    send.finish().unwrap();
    // Keep the connection until the client has read the reply.
    let _ = send.stopped().await;
}
