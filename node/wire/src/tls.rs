//! TLS identities bound to replica keys, and the QUIC configurations built on them.
//!
//! There is no CA. A replica's certificate is self-signed with its ed25519 replica key, and peers
//! judge a certificate only by that key: a client pins the one key it expects from the genesis,
//! and a server accepts a client certificate only if its key belongs to a validator. The TLS 1.3
//! handshake signature (checked here with ring) proves the peer holds the key; the certificate's
//! own signature, names and dates carry no information and are not checked.
//!
//! Every builder names the ring provider explicitly, so nothing depends on a process-level
//! default `CryptoProvider`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use quire_chain::{Keypair, PublicKey, ReplicaId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring as ring_provider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use thiserror::Error;

/// Building a TLS or QUIC configuration failed: a local fault (a key or a library refusing its
/// settings), never a peer's.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot encode the replica key as PKCS#8: {reason}")]
    KeyEncoding { reason: String },
    #[error("cannot build the replica certificate: {source}")]
    Certificate {
        #[source]
        source: rcgen::Error,
    },
    #[error("TLS configuration of the {side}: {source}")]
    Tls {
        side: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("QUIC configuration of the {side}: {reason}")]
    Quic { side: &'static str, reason: String },
}

/// The application protocol; both sides must offer it.
pub const ALPN: &[u8] = b"quire/1";

/// The name clients put in the handshake. Servers are recognised by key, not by name.
pub const SERVER_NAME: &str = "quire";

/// DER of an ed25519 SubjectPublicKeyInfo up to the key (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Keep-alives well inside the idle timeout keep idle replica links open, and let a dead peer be
/// noticed within the idle timeout.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT_MS: u32 = 10_000;
/// A replica opens one uni stream per connection, and each open stream may hold a frame being
/// read, so few are allowed; clients open a bi stream per request.
const UNI_STREAMS_MAX: u32 = 4;
const BIDI_STREAMS_MAX: u32 = 64;

/// The ed25519 key a DER certificate carries, or `None` if it is malformed or not ed25519.
pub fn certificate_key(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let parsed = ParsedCertificate::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    key.try_into().ok()
}

/// The QUIC server side of a replica: presents `identity`'s certificate, asks for an optional
/// client certificate, and accepts one only if its key is in `allowed_replicas`.
pub fn server_config(
    identity: &Keypair,
    allowed_replicas: Arc<BTreeMap<[u8; 32], ReplicaId>>,
) -> Result<quinn::ServerConfig, TlsError> {
    let side = "server";
    let (certs, key) = self_signed(identity)?;
    let verifier = Arc::new(ReplicaClientVerifier {
        allowed: allowed_replicas,
        algorithms: algorithms(),
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Tls { side, source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Tls { side, source })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: every connection shows (and has verified) its certificate, so
    // `peer_replica` never depends on what a session cache remembered.
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic {
        side,
        reason: e.to_string(),
    })?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// The QUIC client side of a replica dialing a peer: pins `expected_server`'s key and presents
/// `identity`'s certificate so the peer knows which replica is talking.
pub fn replica_client_config(
    identity: &Keypair,
    expected_server: PublicKey,
) -> Result<quinn::ClientConfig, TlsError> {
    let (certs, key) = self_signed(identity)?;
    let tls = client_builder(expected_server)?
        .with_client_auth_cert(certs, key)
        .map_err(|source| TlsError::Tls {
            side: "client",
            source,
        })?;
    let mut config = finish_client(tls)?;
    config.transport_config(Arc::new(replica_link_transport()));
    Ok(config)
}

/// The QUIC client side of a plain client (no certificate), pinning `expected_server`'s key.
pub fn client_config(expected_server: PublicKey) -> Result<quinn::ClientConfig, TlsError> {
    finish_client(client_builder(expected_server)?.with_no_client_auth())
}

/// The replica at the other end of an accepted connection, from its client certificate; `None`
/// for a plain client (or a certificate whose key is not in `allowed`).
pub fn peer_replica(
    conn: &quinn::Connection,
    allowed: &BTreeMap<[u8; 32], ReplicaId>,
) -> Option<ReplicaId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let key = certificate_key(certs.first()?)?;
    allowed.get(&key).copied()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring_provider::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    ring_provider::default_provider().signature_verification_algorithms
}

type ClientBuilder = rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>;

fn client_builder(expected_server: PublicKey) -> Result<ClientBuilder, TlsError> {
    let verifier = Arc::new(PinnedServerVerifier {
        expected: expected_server.to_bytes(),
        algorithms: algorithms(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Tls {
            side: "client",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    Ok(builder)
}

fn finish_client(mut tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic {
        side: "client",
        reason: e.to_string(),
    })?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// A link between replicas notices a dead peer within `REPLICA_IDLE_TIMEOUT_MS` (the idle
/// timeout is the smaller of the two sides', so this applies to replica links only). Then its
/// sender dials again, and the dial is made afresh the moment the peer's new incarnation dials
/// us. With 10 s, a link to a replica that crashed for a few seconds stayed on the dead
/// connection, whose probes QUIC backs off exponentially: the restarted replica was heard from
/// again only 1–4.5 s after it was up.
const REPLICA_KEEP_ALIVE: Duration = Duration::from_millis(500);
const REPLICA_IDLE_TIMEOUT_MS: u32 = 2_500;

fn replica_link_transport() -> TransportConfig {
    let mut transport = transport();
    transport
        .keep_alive_interval(Some(REPLICA_KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
            REPLICA_IDLE_TIMEOUT_MS,
        ))));
    transport
}

fn transport() -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .max_concurrent_uni_streams(VarInt::from_u32(UNI_STREAMS_MAX))
        .max_concurrent_bidi_streams(VarInt::from_u32(BIDI_STREAMS_MAX));
    transport
}

/// A certificate whose key is the replica key, and that key in the form rustls loads.
pub fn self_signed(
    identity: &Keypair,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let pkcs8 = identity
        .signing_key()
        .to_pkcs8_der()
        .map_err(|e| TlsError::KeyEncoding {
            reason: e.to_string(),
        })?;
    let key_der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let certificate = |source| TlsError::Certificate { source };
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key_der, &rcgen::PKCS_ED25519)
        .map_err(certificate)?;
    let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
        .map_err(certificate)?
        .self_signed(&key_pair)
        .map_err(certificate)?;
    Ok((vec![cert.der().clone()], PrivateKeyDer::Pkcs8(key_der)))
}

/// The ed25519 key of a presented certificate, as the error rustls reports when there is none.
fn presented_key(cert: &CertificateDer<'_>) -> Result<[u8; 32], rustls::Error> {
    certificate_key(cert).ok_or(rustls::Error::InvalidCertificate(
        CertificateError::BadEncoding,
    ))
}

fn unknown_key() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

/// Server side: client certificates are optional (plain clients have none); a presented one must
/// carry a validator's key.
#[derive(Debug)]
struct ReplicaClientVerifier {
    allowed: Arc<BTreeMap<[u8; 32], ReplicaId>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ReplicaClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = presented_key(end_entity)?;
        if !self.allowed.contains_key(&key) {
            return Err(unknown_key());
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // Every accepted certificate carries an ed25519 key, so no other scheme can verify.
        vec![SignatureScheme::ED25519]
    }
}

/// Client side: the server must show exactly the key the genesis gives it.
#[derive(Debug)]
struct PinnedServerVerifier {
    expected: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if presented_key(end_entity)? != self.expected {
            return Err(unknown_key());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
