//! The podsnat binary: parse the command line, run the command, map the
//! outcome to an exit code (0 unchanged, 2 changed, 1 error).

use podsnat::{Cli, ExitStatus, Printer};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut p = Printer::stdio();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors, but 2 means "changed" here.
            let usage = e.use_stderr();
            return match p.clap(&e) {
                Ok(()) if !usage => ExitCode::SUCCESS,
                Ok(()) => ExitCode::from(1),
                Err(e) => {
                    p.error(&e);
                    ExitCode::from(1)
                }
            };
        }
    };
    match podsnat::run(cli, &mut p) {
        Ok(status) => status.into(),
        Err(e) => {
            p.error(&e);
            ExitStatus::Failed.into()
        }
    }
}
