//! `podsnat render`: the nat table on stdout, IPv4's then IPv6's on a
//! dual-stack node (each opens with its own `# podsnat` header); with
//! `--anchor`, the nftables anchor file instead. Changes nothing.

use std::io::Write;

use super::{ExitStatus, emit_raw, load_spec};
use crate::cli::RenderArgs;
use crate::error::{Error, Result};
use crate::render;

pub fn run(args: &RenderArgs, out: &mut impl Write) -> Result<ExitStatus> {
    let node = load_spec(&args.spec)?;
    if args.anchor {
        if !node.anchor() {
            return Err(Error::Usage(
                "--anchor: the settings turn the anchor off (anchor = false or --no-anchor)".into(),
            ));
        }
        emit_raw(out, &render::anchor(&node))?;
        return Ok(ExitStatus::Unchanged);
    }
    // One table at a time, each written as soon as it is rendered: a table
    // of 10,000 exclusions is never held twice.
    for (i, spec) in node.specs().iter().enumerate() {
        if i > 0 {
            emit_raw(out, "\n")?;
        }
        emit_raw(out, &render::nat_table(spec))?;
    }
    Ok(ExitStatus::Unchanged)
}
