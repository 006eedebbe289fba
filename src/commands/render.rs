//! `podsnat render`: the nat table on stdout, IPv4's then IPv6's on a
//! dual-stack node (each opens with its own `# podsnat` header). Changes
//! nothing.

use std::io::Write;

use super::{ExitStatus, emit, load_spec};
use crate::cli::SpecArgs;
use crate::error::Result;
use crate::render;

pub fn run(args: &SpecArgs, out: &mut impl Write) -> Result<ExitStatus> {
    let node = load_spec(args)?;
    let tables: Vec<String> = node.specs().iter().map(render::nat_table).collect();
    emit(out, &tables.join("\n"))?;
    Ok(ExitStatus::Unchanged)
}
