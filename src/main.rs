#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::ExitCode;

use clap::Parser;
use podsnat::cli::{self, Cli, Status};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors, but 2 means "changed" here.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match cli::run(cli) {
        Ok(Status::Unchanged) => ExitCode::SUCCESS,
        Ok(Status::Changed) => ExitCode::from(2),
        Ok(Status::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("podsnat: {e}");
            ExitCode::from(1)
        }
    }
}
