//! Fake replicas over real QUIC for the client's tests: honest ones that serve a real certified
//! chain (genesis plus one block), a liar with a chosen lie, and silent ones (a bound UDP port
//! that nobody serves). Timeouts are short so the tests stay fast.

// Each test crate uses part of the harness; tests may unwrap.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use quire_chain::block::{Batch, BlockRecord, Header};
use quire_chain::cert::{Certificate, CheckpointCertificate, CheckpointStatement, Statement as _};
use quire_chain::codec::{Decode, Encode};
use quire_chain::genesis::Protocol;
use quire_chain::ledger::Ledger;
use quire_chain::merkle;
use quire_chain::smt::SmtProof;
use quire_chain::testkit::TestNet;
use quire_chain::tx::{Outcome, Rejection, TxId};
use quire_chain::{Account, Address, Hash, ReplicaId};
use quire_client::network::{AccountEntry, NetworkFile, Replica, ReplicaEntry};
use quire_client::{Network, Options};
use quire_wire::rpc::{
    Attestation, BlockRef, NodeStatus, Prepared, Refusal, Request, Response, Statement, TxStatus,
};
use quire_wire::{FRAME_BYTES_MAX, read_frame, server_config, write_frame};

/// The honest world: genesis (checkpoints every block), then one certified block with a transfer
/// from account 0, whose checkpoint validators 0, 1 and 2 signed.
pub struct World {
    pub net: TestNet,
    pub ledger: Ledger,
    pub record: BlockRecord,
    pub checkpoint: CheckpointCertificate,
    /// The transaction [`Lie::PreparedAlone`] reports (set by the test once it knows it).
    pub watched: std::sync::OnceLock<TxId>,
    /// How many reports of it the liar sent.
    pub reports_sent: std::sync::atomic::AtomicU64,
}

impl World {
    pub fn new() -> World {
        let protocol = Protocol {
            checkpoint_interval: 1,
            log_window: 2,
            ..Protocol::default()
        };
        let net = TestNet::with_protocol(4, 2, 0, protocol);
        let mut ledger = net.genesis.ledger();
        let batch = Batch {
            view: 0,
            proposer: 0,
            timestamp_ms: 1,
            txs: vec![net.transfer(0, 1, 5, 0)],
        };
        let parent = net.genesis.block().header;
        let record = net.certified_block(&mut ledger, &parent, &batch).record;
        let statement = CheckpointStatement {
            seq: 1,
            block_hash: record.block.hash(),
        };
        let votes: BTreeMap<ReplicaId, _> = (0..3)
            .map(|i| {
                (
                    i,
                    statement.sign(&net.validator_keys[i as usize], &net.chain_id()),
                )
            })
            .collect();
        World {
            watched: std::sync::OnceLock::new(),
            reports_sent: std::sync::atomic::AtomicU64::new(0),
            checkpoint: Certificate::from_votes(statement, &votes),
            net,
            ledger,
            record,
        }
    }

    pub fn head(&self) -> Header {
        self.record.block.header
    }

    pub fn tx(&self) -> TxId {
        self.record.block.txs[0].id()
    }

    fn attest(&self, me: ReplicaId, statement: Statement) -> Attestation {
        let key = &self.net.validator_keys[me as usize];
        Attestation::sign(statement, me, key, &self.net.chain_id())
    }

    fn attest_header(&self, me: ReplicaId, header: &Header) -> Attestation {
        self.attest(me, Statement::of(header))
    }

    fn tx_status(&self, me: ReplicaId, outcome: Outcome) -> TxStatus {
        TxStatus::Committed {
            block: self.record.block.clone(),
            proof: merkle::prove(&self.record.block.batch().tx_ids(), 0).unwrap(),
            outcome,
            outcome_proof: self.record.outcome_proof(0).unwrap(),
            attestation: self.attest_header(me, &self.head()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Lie {
    /// Account: a wrong balance with the honest proof, which cannot match.
    WrongBalance,
    /// Account and Attest: a made-up state, a header over its root, attested by the liar only.
    ForgedHeader,
    /// TxStatus: the committed transfer was rejected (it was applied).
    WrongOutcome,
    /// Submit: every transaction refused as if its nonce were used.
    StaleNonce,
    /// WaitPrepared and WaitBlockIds at height 2: the world's watched transaction prepared
    /// there, then committed (no other replica says so).
    PreparedAlone,
}

/// How one fake replica answers.
fn answer(world: &World, me: ReplicaId, lie: Option<Lie>, request: Request) -> Response {
    let head = world.head();
    match (request, lie) {
        (Request::Account(address), Some(Lie::WrongBalance)) => {
            let (account, proof) = world.ledger.clone().prove(&address);
            let account = Account {
                balance: account.balance + 1_000_000,
                ..account
            };
            Response::Account {
                header: head,
                attestation: world.attest_header(me, &head),
                account,
                proof,
            }
        }
        (Request::Account(address), Some(Lie::ForgedHeader)) => {
            let (header, account, proof) = forgery(world, address);
            Response::Account {
                header,
                attestation: world.attest_header(me, &header),
                account,
                proof,
            }
        }
        (Request::Attest(h), Some(Lie::ForgedHeader)) if h == head.height => {
            let (header, _, _) = forgery(world, world.net.account_keys[0].address());
            Response::Attestation(Some(world.attest_header(me, &header)))
        }
        (Request::TxStatus(id), Some(Lie::WrongOutcome)) if id == world.tx() => {
            let lie = Outcome::Rejected(Rejection::InsufficientBalance {
                balance: 0,
                amount: 5,
            });
            Response::TxStatus(world.tx_status(me, lie))
        }
        (Request::Submit(txs), Some(Lie::StaleNonce)) => Response::Submitted(
            txs.iter()
                .map(|_| Err(Refusal::StaleNonce { expected: 99 }))
                .collect(),
        ),
        (Request::WaitPrepared { height: 2, .. }, Some(Lie::PreparedAlone)) => {
            let Some(id) = world.watched.get() else {
                return Response::Prepared(None);
            };
            world
                .reports_sent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Response::Prepared(Some(Prepared {
                height: 2,
                view: 0,
                digest: Hash([7; 32]),
                parent: head.hash(),
                committed: false,
                ids: vec![*id],
            }))
        }
        (Request::WaitBlockIds { height: 2, .. }, Some(Lie::PreparedAlone)) => {
            let Some(id) = world.watched.get() else {
                return honest(
                    world,
                    me,
                    Request::WaitBlockIds {
                        height: 2,
                        wait_ms: 0,
                    },
                );
            };
            let mut header = head;
            header.height = 2;
            header.parent_hash = head.hash();
            Response::BlockIds {
                header: Some(header),
                ids: vec![*id],
                attestation: None,
            }
        }
        (request, _) => honest(world, me, request),
    }
}

fn honest(world: &World, me: ReplicaId, request: Request) -> Response {
    let head = world.head();
    let genesis_block = world.net.genesis.block();
    match request {
        Request::Account(address) => {
            let (account, proof) = world.ledger.clone().prove(&address);
            Response::Account {
                header: head,
                attestation: world.attest_header(me, &head),
                account,
                proof,
            }
        }
        Request::Attest(0) => {
            Response::Attestation(Some(world.attest_header(me, &genesis_block.header)))
        }
        Request::Attest(h) if h == head.height => {
            Response::Attestation(Some(world.attest_header(me, &head)))
        }
        Request::Attest(_) => Response::Attestation(None),
        Request::TxStatus(id) if id == world.tx() => {
            Response::TxStatus(world.tx_status(me, world.record.outcomes[0]))
        }
        Request::TxStatus(_) => Response::TxStatus(TxStatus::Unknown),
        Request::Block(BlockRef::Latest | BlockRef::Height(1)) => Response::Block {
            block: Some(world.record.block.clone()),
            outcomes: world.record.outcomes.clone(),
            attestation: Some(world.attest_header(me, &head)),
        },
        Request::Block(BlockRef::Height(0)) => Response::Block {
            block: Some(genesis_block),
            outcomes: Vec::new(),
            attestation: None,
        },
        Request::WaitBlock { height, .. } => {
            honest(world, me, Request::Block(BlockRef::Height(height)))
        }
        Request::Block(_) => Response::Block {
            block: None,
            outcomes: Vec::new(),
            attestation: None,
        },
        Request::Headers { from, count } => {
            let all = [
                (genesis_block.header, None),
                (head, world.record.block.certificate.clone()),
            ];
            let items = all
                .into_iter()
                .skip(from as usize)
                .take(count as usize)
                .collect();
            Response::Headers(items)
        }
        Request::Checkpoint => Response::Checkpoint {
            seq: 1,
            block_hash: head.hash(),
            certificate: Some(world.checkpoint.clone()),
        },
        Request::Status => Response::Status(NodeStatus {
            replica: me,
            view: 0,
            changing_view: false,
            height: head.height,
            head_hash: head.hash(),
            stable_checkpoint: 0,
            peers_connected: 2,
            behaviour: "honest".into(),
            mempool: 0,
            pid: 1,
        }),
        Request::Submit(txs) => Response::Submitted(txs.iter().map(|t| Ok(t.id())).collect()),
        Request::WaitBlockIds { height, .. } => {
            match honest(world, me, Request::Block(BlockRef::Height(height))) {
                Response::Block {
                    block: Some(block),
                    attestation,
                    ..
                } => Response::BlockIds {
                    header: Some(block.header),
                    ids: block.txs.iter().map(|tx| tx.id()).collect(),
                    attestation,
                },
                _ => Response::BlockIds {
                    header: None,
                    ids: Vec::new(),
                    attestation: None,
                },
            }
        }
        // Nothing is ever prepared in this world.
        Request::WaitPrepared { .. } => Response::Prepared(None),
    }
}

fn forgery(world: &World, address: Address) -> (Header, Account, SmtProof) {
    let rich = Account {
        balance: u64::MAX,
        nonce: 0,
    };
    let mut fake = Ledger::new(world.net.chain_id(), [(address, rich)]);
    let (account, proof) = fake.prove(&address);
    let mut header = world.head();
    header.state_root = fake.state_root();
    (header, account, proof)
}

/// Starts fake replica `me` on an ephemeral port; returns its address.
fn start_fake(world: Arc<World>, me: ReplicaId, lie: Option<Lie>) -> SocketAddr {
    let allowed: BTreeMap<[u8; 32], ReplicaId> = world
        .net
        .validator_keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.public().to_bytes(), i as ReplicaId))
        .collect();
    let config = server_config(&world.net.validator_keys[me as usize], Arc::new(allowed)).unwrap();
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let world = Arc::clone(&world);
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let world = Arc::clone(&world);
                    tokio::spawn(async move {
                        while let Ok(Some(bytes)) = read_frame(&mut recv, FRAME_BYTES_MAX).await {
                            let response = match Request::from_bytes(&bytes) {
                                Ok(request) => answer(&world, me, lie, request),
                                Err(e) => Response::Error(e.to_string()),
                            };
                            if write_frame(&mut send, &response.to_bytes()).await.is_err() {
                                return;
                            }
                        }
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    addr
}

/// What each of the four replicas is.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    Honest,
    Liar(Lie),
    Silent,
}

/// A fake network; keep it alive for the test (it holds the silent replicas' sockets).
pub struct FakeNet {
    pub network: Network,
    _silent: Vec<UdpSocket>,
}

pub fn fake_network(world: &Arc<World>, roles: [Role; 4]) -> FakeNet {
    let mut silent = Vec::new();
    let mut replicas = Vec::new();
    for (id, role) in roles.iter().enumerate() {
        let id = id as ReplicaId;
        let quic = match role {
            Role::Honest => start_fake(Arc::clone(world), id, None),
            Role::Liar(lie) => start_fake(Arc::clone(world), id, Some(*lie)),
            Role::Silent => {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                let addr = socket.local_addr().unwrap();
                silent.push(socket);
                addr
            }
        };
        replicas.push(Replica {
            id,
            key: world.net.validator_keys[id as usize].public(),
            quic,
            http: "127.0.0.1:9".parse().unwrap(),
            pid_file: None,
        });
    }
    FakeNet {
        network: Network {
            path: PathBuf::from("fake/network.toml"),
            genesis: world.net.genesis.clone(),
            replicas,
            accounts: Vec::new(),
        },
        _silent: silent,
    }
}

pub fn options() -> Options {
    Options {
        call_timeout: Duration::from_millis(500),
        attest_wait: Duration::from_millis(600),
        resubmit_after: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
        hedge: Duration::from_millis(100),
        prefer: None,
    }
}

pub fn unused_hash() -> TxId {
    TxId(Hash([0x42; 32]))
}

// ---- the `quire` binary against a fake network ----------------------------------------

/// Writes genesis, account keys and the network file for `network` into a fresh directory.
pub fn write_network(world: &World, network: &quire_client::Network) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "quire-cli-net-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    fs::create_dir_all(dir.join("accounts")).unwrap();
    fs::write(dir.join("genesis.toml"), world.net.genesis.to_toml()).unwrap();
    let mut accounts = Vec::new();
    for (i, key) in world.net.account_keys.iter().enumerate() {
        let rel = format!("accounts/account-{i}.toml");
        key.write_file(&dir.join(&rel)).unwrap();
        accounts.push(AccountEntry {
            name: format!("account-{i}"),
            key: rel,
            address: key.address().to_string(),
        });
    }
    let file = NetworkFile {
        chain_id: world.net.chain_id().to_hex(),
        genesis: "genesis.toml".into(),
        replicas: network
            .replicas
            .iter()
            .map(|r| ReplicaEntry {
                id: r.id,
                public_key: r.key.to_hex(),
                quic: r.quic.to_string(),
                http: r.http.to_string(),
                pid_file: None,
            })
            .collect(),
        accounts,
    };
    fs::write(dir.join("network.toml"), toml::to_string(&file).unwrap()).unwrap();
    dir
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the CLI off the async runtime, so the fake replicas keep serving meanwhile.
pub async fn quire(dir: &Path, args: &[&str]) -> Run {
    let network = dir.join("network.toml");
    let mut all: Vec<String> = vec![
        "--network".into(),
        network.display().to_string(),
        "--timeout-ms".into(),
        "500".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        // No health file: each run starts knowing nothing, whatever ran before.
        let output = Command::new(env!("CARGO_BIN_EXE_quire"))
            .args(&all)
            .env("QUIRE_CACHE_DIR", "")
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    })
    .await
    .unwrap()
}

pub fn assert_ok(run: &Run, expect: &[&str]) {
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    for e in expect {
        assert!(
            run.stdout.contains(e),
            "{e:?} missing from:\n{}",
            run.stdout
        );
    }
}
