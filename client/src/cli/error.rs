//! CLI errors: one line for people, and the exit status scripts branch on; with `--json`, the
//! replicas whose answers were set aside, by id.

use std::process::ExitCode;

use quire_client::{ClientError, Fault};
use serde_json::{Value, json};

/// Exit status 2: the command line or a local input (file, address, amount) is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Exit status 1: the command could not be carried out (network, verification, refusal).
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug)]
pub enum CliError {
    /// Bad input: fix the command line or the file.
    Usage(String),
    /// The operation failed.
    Failure(String),
    /// The operation failed; these replicas' answers were set aside on the way.
    Faults { message: String, faults: Vec<Value> },
}

impl CliError {
    pub fn message(&self) -> &str {
        match self {
            CliError::Usage(m) | CliError::Failure(m) => m,
            CliError::Faults { message, .. } => message,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.status())
    }

    pub fn status(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failure(_) | CliError::Faults { .. } => EXIT_FAILURE,
        }
    }

    /// The error as `--json` prints it.
    pub fn to_json(&self) -> Value {
        let mut value = json!({ "error": self.message(), "exit_code": self.status() });
        if let CliError::Faults { faults, .. } = self {
            value["faults"] = json!(faults);
        }
        value
    }
}

/// One set-aside answer: which replica, what kind of fault, and why.
pub fn fault_json(fault: &Fault) -> Value {
    json!({
        "replica": fault.replica(),
        "kind": fault.kind(),
        "reason": fault.to_string(),
    })
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        let mut faults: Vec<Value> = e.faults().iter().map(fault_json).collect();
        if let ClientError::Refused { refusals, .. } = &e {
            faults.extend(refusals.iter().map(|r| {
                json!({ "replica": r.replica, "kind": "refused", "reason": r.refusal.to_string() })
            }));
        }
        if let ClientError::Chain(problem) = &e
            && let Some(replica) = problem.replica
        {
            faults.push(json!({
                "replica": replica, "kind": "bad_evidence", "reason": problem.to_string(),
            }));
        }
        if faults.is_empty() {
            CliError::Failure(e.to_string())
        } else {
            CliError::Faults {
                message: e.to_string(),
                faults,
            }
        }
    }
}
