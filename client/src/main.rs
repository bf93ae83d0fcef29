//! `quire`: the Quire command-line client. See `quire --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
