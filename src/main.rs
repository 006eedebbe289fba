//! The podsnat binary: parse the command line, run the command, map the
//! outcome to an exit code (0 unchanged, 2 changed, 1 error).

use podsnat::{Cli, ExitStatus};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors, but 2 means "changed" here.
            if !e.use_stderr() {
                // --help and --version: podsnat's own text.
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // A usage error quotes the argument it refuses: escaped and cut.
            eprint!("{}", podsnat::safe(&e.render().to_string()));
            return ExitCode::from(1);
        }
    };
    match podsnat::run(cli) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("podsnat: {}", podsnat::safe(&e.to_string()));
            ExitStatus::Failed.into()
        }
    }
}
