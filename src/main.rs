//! The podsnat binary: parse the command line, run the command, map the
//! outcome to an exit code (0 unchanged, 2 changed, 1 error).

use std::process::ExitCode;

use clap::Parser;
use podsnat::cli::Cli;
use podsnat::commands::{self, ExitStatus};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors, but 2 means "changed" here.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match commands::run(cli) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("podsnat: {e}");
            ExitStatus::Failed.into()
        }
    }
}
