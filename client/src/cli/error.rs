//! CLI errors: one line for people, and the exit status scripts branch on.

use std::process::ExitCode;

use quire_client::ClientError;

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
}

impl CliError {
    pub fn message(&self) -> &str {
        match self {
            CliError::Usage(m) | CliError::Failure(m) => m,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.status())
    }

    pub fn status(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failure(_) => EXIT_FAILURE,
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        CliError::Failure(e.to_string())
    }
}
