//! `podsnat render`: the nat table on stdout, IPv4's then IPv6's on a
//! dual-stack node (each opens with its own `# podsnat` header); with
//! `--anchor`, the nftables anchor file instead. Changes nothing.

use super::{ExitStatus, load_spec};
use crate::cli::RenderArgs;
use crate::error::{Error, Result};
use crate::printer::{Own, Printer};
use crate::render;

pub fn run(args: &RenderArgs, p: &mut Printer<'_>) -> Result<ExitStatus> {
    let node = load_spec(&args.spec)?;
    if args.anchor {
        if !node.anchor() {
            return Err(Error::Usage(
                "--anchor: the settings turn the anchor off (anchor = false or --no-anchor)".into(),
            ));
        }
        p.own(&Own::checked("print the anchor", render::anchor(&node))?)?;
        return Ok(ExitStatus::Unchanged);
    }
    // One table at a time, each written as soon as it is rendered: a table
    // of 10,000 exclusions is never held twice.
    for (i, spec) in node.specs().iter().enumerate() {
        if i > 0 {
            p.own(&Own::checked("print the tables", "\n".into())?)?;
        }
        p.own(&Own::checked(
            "print the nat table",
            render::nat_table(spec),
        )?)?;
    }
    Ok(ExitStatus::Unchanged)
}
