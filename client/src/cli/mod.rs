//! The `quire` command line: argument parsing, input checks, and printing around the client
//! library. Errors are one `error: …` line on stderr; exit status 2 for bad input, 1 for failures.

mod args;
mod commands;
mod error;
mod evidence;
mod input;
mod output;
mod pow;
mod reads;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use args::Cli;
use error::{CliError, EXIT_USAGE};

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, json);
            e.exit_code()
        }
    }
}

fn report(e: &CliError, json: bool) {
    if json {
        println!("{}", e.to_json());
    }
    eprintln!("error: {}", e.message());
}

/// Help and version go to stdout as clap formats them; a usage error becomes one line.
fn clap_exit(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            eprintln!("error: {}", one_line(&e.render().to_string()));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Clap's message without the usage block, folded onto one line.
fn one_line(rendered: &str) -> String {
    let text = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let text = text.strip_prefix("error: ").unwrap_or(&text).to_string();
    format!("{text} (see `quire --help`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_fold_onto_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  \
                        --to <ADDRESS>\n\nUsage: quire transfer --to <ADDRESS>\n\nFor more \
                        information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: --to <ADDRESS> (see `quire --help`)"
        );
    }
}
