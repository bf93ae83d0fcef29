//! The replica's QUIC endpoint settings that only a replica needs (clients use quinn's defaults).

use std::sync::Arc;

use quire_chain::Keypair;
use ring::hmac;

/// The endpoint configuration of a replica, with restart-stable keys derived from its secret.
///
/// A restarted replica recognises the connection ids of its previous incarnation and can send
/// their stateless resets (RFC 9000 §10.3), so a peer still talking to the dead incarnation is
/// told at its next packet (a keep-alive at most), not after the idle timeout.
pub(crate) fn endpoint_config(identity: &Keypair) -> quinn::EndpointConfig {
    let prf = hmac::Key::new(hmac::HMAC_SHA256, &identity.secret_bytes());
    let derive = |label: &[u8]| hmac::sign(&prf, label);
    let reset = derive(b"quire/v1/transport/stateless-reset");
    let cid = derive(b"quire/v1/transport/connection-id");
    let cid_key = cid
        .as_ref()
        .first_chunk()
        .map_or(0, |b| u64::from_le_bytes(*b));
    let mut config =
        quinn::EndpointConfig::new(Arc::new(hmac::Key::new(hmac::HMAC_SHA256, reset.as_ref())));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}
