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
    let tables: Vec<String> = node.specs().iter().map(render::nat_table).collect();
    emit_raw(out, &tables.join("\n"))?;
    Ok(ExitStatus::Unchanged)
}
